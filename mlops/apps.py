from django.apps import AppConfig


class MlopsConfig(AppConfig):
    name = "mlops"
    label = "mlops"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from mlops import checks  # noqa: F401  (registers the security system checks)
