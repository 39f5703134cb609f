"""Where the other apps plug into the registry, which imports neither of them.

Data flows one way: `inference` and `audit` import `mlops`, never the reverse (only the project
wiring, ``mlops.urls`` and ``mlops.asgi``, names them). Where mlops needs something that only
they know, it declares a hook here, and they fill it in from their ``AppConfig.ready``:

- `serving_started`: sent once per process by every server entry point (``mlops.wsgi`` for
  gunicorn, uWSGI and ``runserver``'s WSGI; ``mlops.asgi`` for daphne, uvicorn, granian and
  daphne's ``runserver``). Receivers start what runs beside a server and never beside a
  management command: the in-process rollout guard (`audit.guard.runner.start_in_process`).
- `role_stats`: requests, errors and p95 per role from the prediction log, for the rollout page
  (`audit.selectors.role_stats`, on the one definition of model health).
- `backtest_start`: queue a backtest of a model version on logged traffic and run it off the
  request path (`inference.backtests.backtest_start`), for the registry admin's action.
- `backtest_gate`: why a candidate may not be validated yet, or None, when
  ``BACKTEST_REQUIRED_FOR_VALIDATION`` is on (`audit.backtests.backtest_gate`).
- `rollout_guard_status`: what the rollout guard is waiting for on a product's canary, per metric
  ("needs 180 more outcomes at 25%"), for the rollout page (`audit.guard.services.rollout_guard_status`).
- `canary_verdict`: what the rollout guard would conclude about a product's canary now ("breach",
  "ready", "insufficient_data" or "healthy", with a line), for the product dashboard
  (`audit.guard.services.canary_verdict`).
- `drift_summary`: per model version id, the largest feature PSI of its latest drift window and
  its level, for the model list's drift column (`audit.drift.selectors.drift_summary`).
"""

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

serving_started = Signal()


class Provider:
    """One function another app provides at ``ready()``; calling the hook calls it."""

    def __init__(self, name: str):
        self.name = name
        self._function: Callable | None = None

    def provide(self, function: Callable) -> None:
        self._function = function

    def __call__(self, **kwargs):
        if self._function is None:
            raise ImproperlyConfigured(f"nothing provides {self.name}: the app that does is not installed")
        return self._function(**kwargs)


role_stats = Provider("role_stats")

# Backtests (audit.backtests, inference.backtests).
backtest_start = Provider("backtest_start")
backtest_gate = Provider("backtest_gate")

# The rollout guard (audit.guard.services).
rollout_guard_status = Provider("rollout_guard_status")
canary_verdict = Provider("canary_verdict")
# Drift (audit.drift).
drift_summary = Provider("drift_summary")
