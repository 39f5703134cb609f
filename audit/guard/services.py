"""One evaluation of every active canary: measure from the log, judge, and act through mlops.

The rollback itself (stop the canary, record the `RollbackEvent`) is the registry's service
`mlops.services.canary_auto_rollback`; this module only decides to call it, then logs and counts.
"""

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from audit.guard.judge import Verdict, enough_data, judge, thresholds
from audit.guard.metrics import EVALUATIONS, ROLLBACKS
from audit.selectors import canary_measure
from mlops import selectors, services
from mlops.models import CanaryConfig
from mlops.services.lifecycle import LifecycleError

logger = logging.getLogger(__name__)


def canary_evaluate(config: CanaryConfig, *, now: datetime, limits: dict) -> Verdict:
    """Judge one active canary at ``now``; stop it on the first breach."""
    start = now - timedelta(seconds=limits["window_seconds"])
    if config.started_at and config.started_at > start:
        start = config.started_at  # judge a (re)started canary on its own traffic only
    measured = canary_measure(product=config.product, canary_model_id=config.canary_model_id, start=start, end=now)
    verdict = Verdict(product=config.product, canary=str(config.canary_model), result="healthy", measured=measured)
    if not enough_data(measured, limits):
        verdict.result = "insufficient_data"
        verdict.message = f"{measured['canary_attempts']} canary requests in the window, fewer than {limits['min_requests']}"
    breach = judge(measured, limits)
    if breach is None:
        return verdict
    reason, message = breach
    verdict.reason, verdict.message = reason, message
    try:
        verdict.event = services.canary_auto_rollback(
            config=config,
            reason=reason,
            message=message,
            measured={**measured, "thresholds": limits},
            window_start=start,
            window_end=now,
        )
    except LifecycleError as exc:  # someone stopped or changed it meanwhile: nothing left to do
        verdict.result, verdict.message = "skipped", str(exc)
        return verdict
    verdict.result = "rolled_back"
    ROLLBACKS.labels(product=config.product, reason=reason).inc()
    logger.warning(
        "rollout guard stopped the canary %s of %s at %s%%: %s (%s)",
        config.canary_model,
        config.product,
        f"{config.canary_basis_points / 100:g}",
        message,
        reason,
        extra={"product": config.product, "reason": reason, "canary": str(verdict.event.model_version_id)},
    )
    return verdict


def rollout_guard_evaluate(*, now: datetime | None = None) -> list[Verdict]:
    """Judge every active canary once; stop the ones that breach. One verdict per canary."""
    now = now or timezone.now()
    limits = thresholds()
    verdicts = []
    for config in selectors.active_canaries():
        try:
            verdict = canary_evaluate(config, now=now, limits=limits)
        except Exception:  # one product's failure must not stop the guard for the others
            logger.exception("rollout guard could not evaluate the canary of %s", config.product)
            verdict = Verdict(product=config.product, canary=str(config.canary_model), result="error")
        EVALUATIONS.labels(result=verdict.result).inc()
        verdicts.append(verdict)
    return verdicts
