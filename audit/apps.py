from django.apps import AppConfig
from django.conf import settings


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from audit import checks  # noqa: F401 - registers the immutability trigger check

        # The rollout guard's thread in serving processes of the embedded default (see audit.guard).
        if getattr(settings, "ROLLOUT_GUARD_IN_PROCESS", False):
            from audit import guard

            if guard.serving_process():
                guard.start_in_process()
