from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class MlopsConfig(AppConfig):
    name = "mlops"
    label = "mlops"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from mlops import checks  # noqa: F401  (registers the security system checks)


class PlatformAdminConfig(AdminConfig):
    """Django's admin with the platform's site (`mlops.admin_site`): its name and the product dashboard."""

    default_site = "mlops.admin_site.PlatformAdminSite"
