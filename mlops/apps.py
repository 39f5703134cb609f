from django.apps import AppConfig


class MlopsConfig(AppConfig):
    name = "mlops"
    label = "mlops"
    verbose_name = "Model registry"
