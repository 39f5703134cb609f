from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from audit import backtests, checks, selectors  # noqa: F401 - checks registers the immutability trigger check
        from audit.drift import runner as drift_runner
        from audit.drift import selectors as drift_selectors
        from audit.guard import runner
        from audit.guard.services import canary_verdict, rollout_guard_status
        from mlops import hooks

        # What mlops needs from the log, given the way data flows (mlops never imports audit).
        hooks.role_stats.provide(selectors.role_stats)
        hooks.backtest_gate.provide(backtests.backtest_gate)
        hooks.rollout_guard_status.provide(rollout_guard_status)
        hooks.canary_verdict.provide(canary_verdict)
        hooks.serving_started.connect(runner.start_in_process, dispatch_uid="audit.rollout_guard")
        # Drift runs where the guard runs (audit/drift/runner.py).
        hooks.drift_summary.provide(drift_selectors.drift_summary)
        hooks.serving_started.connect(drift_runner.start_in_process, dispatch_uid="audit.drift")
