from django.apps import AppConfig
from django.conf import settings


class MlopsConfig(AppConfig):
    name = "mlops"
    label = "mlops"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from mlops import checks  # noqa: F401  (registers the security system checks)

        # The rollout guard's thread in serving processes of the embedded default (see mlops.guard).
        if getattr(settings, "ROLLOUT_GUARD_IN_PROCESS", False):
            from mlops import guard

            if guard.serving_process():
                guard.start_in_process()
