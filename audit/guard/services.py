"""One evaluation of every active canary: observe from the log, judge, and act through mlops.

The rollback (stop the canary, record the `RollbackEvent`) is the registry's service
`mlops.services.canary_auto_rollback`; automatic promotion calls `canary_step` and finally
`canary_promote` with ``user=None`` and a reason that begins with ``GUARD_PREFIX``. This module
only decides to call them, then logs and counts.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.utils import timezone

from audit.guard import judge as rules
from audit.guard.judge import Promotion, Rate, Verdict
from audit.guard.metrics import EVALUATIONS, PROMOTIONS, ROLLBACKS
from audit.selectors.rollout import rollout_observations
from mlops import selectors, services
from mlops.choices import GUARD_PREFIX
from mlops.models import CanaryConfig
from mlops.services.lifecycle import LifecycleError
from mlops.services.rollout import canary_ladder

logger = logging.getLogger(__name__)


@dataclass
class Assessment:
    """What the guard sees of one canary: its whole run, and (when it may promote) its current step."""

    config: CanaryConfig
    since: datetime
    until: datetime
    observations: dict
    rates: list[Rate]
    breach: Rate | None
    promotion: list[Promotion] | None  # None: automatic promotion is off

    @property
    def ready(self) -> bool:
        return self.breach is None and bool(self.promotion) and all(check.shown for check in self.promotion)


def _observe(config: CanaryConfig, *, since: datetime, until: datetime, limits: dict) -> dict:
    return rollout_observations(
        product=config.product,
        canary_model_id=config.canary_model_id,
        production_model_id=config.production_model_id,
        since=since,
        until=until,
        bounds={
            "latency_bound": partial(rules.latency_bound, limits=limits),
            "promotion_latency_bound": partial(rules.promotion_latency_bound, limits=limits),
        },
    )


def canary_assess(config: CanaryConfig, *, now: datetime, limits: dict) -> Assessment:
    """Observe and judge one active canary at ``now`` without acting (the rollout page shows this too)."""
    since = config.started_at or now
    observations = _observe(config, since=since, until=now, limits=limits)
    rates = rules.rollback_rates(observations, limits)
    breach = next((rate for rate in rates if rules.breached(rate)), None)
    promotion = None
    if config.auto_promote:
        step_since = max(config.step_started_at or since, since)
        step = observations if step_since == since else _observe(config, since=step_since, until=now, limits=limits)
        promotion = rules.promotion_checks(step, limits, percent=config.canary_percent)
    return Assessment(config, since, now, observations, rates, breach, promotion)


def _unjudged_message(assessment: Assessment, limits: dict) -> str | None:
    """Why no rate is judged yet, or None once one is."""
    if any(rate.judged for rate in assessment.rates):
        return None
    return f"{assessment.rates[0].total} canary requests, fewer than {limits['min_requests']}"


def canary_evaluate(config: CanaryConfig, *, now: datetime, limits: dict) -> Verdict:
    """Judge one active canary at ``now``: stop it on a breach, move it up when it may and is shown non-inferior."""
    assessment = canary_assess(config, now=now, limits=limits)
    verdict = Verdict(product=config.product, canary=str(config.canary_model), result="healthy", measured=assessment.observations)
    if assessment.breach is not None:
        return _roll_back(assessment, verdict, limits)
    if assessment.ready:
        return _move_up(assessment, verdict)
    unjudged = _unjudged_message(assessment, limits)
    if unjudged:
        verdict.result, verdict.message = "insufficient_data", unjudged
    return verdict


def canary_verdict(*, product: str, now: datetime | None = None) -> dict | None:
    """What the guard would conclude about ``product``'s canary now, without acting (None: no active canary).

    ``result`` is "breach" (it would stop it), "ready" (it would move it up), "insufficient_data"
    or "healthy", with a ``label`` for people and a one-line ``message``: the product dashboard's
    evidence verdict.
    """
    config = selectors.active_canaries().filter(product=product).first()
    if config is None:
        return None
    limits = rules.thresholds()
    assessment = canary_assess(config, now=now or timezone.now(), limits=limits)
    if assessment.breach is not None:
        return {"result": "breach", "label": "would roll back", "message": rules.breach_message(assessment.breach)}
    if assessment.ready:
        return {
            "result": "ready",
            "label": "ready to move up",
            "message": rules.promotion_reason(assessment.promotion, percent=config.canary_percent),
        }
    unjudged = _unjudged_message(assessment, limits)
    if unjudged:
        return {"result": "insufficient_data", "label": "gathering evidence", "message": unjudged}
    judged = sum(rate.judged for rate in assessment.rates)
    return {
        "result": "healthy",
        "label": "healthy",
        "message": f"{judged} of {len(assessment.rates)} rates judged, none shown above its limit",
    }


def _roll_back(assessment: Assessment, verdict: Verdict, limits: dict) -> Verdict:
    config, rate = assessment.config, assessment.breach
    message = rules.breach_message(rate)
    verdict.reason, verdict.message = rate.reason, message
    measured = {**rate.record(), "observations": assessment.observations, "thresholds": limits}
    try:
        verdict.event = services.canary_auto_rollback(
            config=config,
            reason=rate.reason,
            message=message,
            measured=measured,
            window_start=assessment.since,
            window_end=assessment.until,
        )
    except LifecycleError as exc:  # someone stopped or changed it meanwhile: nothing left to do
        verdict.result, verdict.message = "skipped", str(exc)
        return verdict
    verdict.result = "rolled_back"
    ROLLBACKS.labels(product=config.product, reason=rate.reason).inc()
    logger.warning(
        "rollout guard stopped the canary %s of %s at %s%%: %s (%s)",
        config.canary_model,
        config.product,
        f"{config.canary_percent:g}",
        message,
        rate.reason,
        extra={"product": config.product, "reason": rate.reason, "canary": str(verdict.event.model_version_id)},
    )
    return verdict


def _move_up(assessment: Assessment, verdict: Verdict) -> Verdict:
    config = assessment.config
    reason = GUARD_PREFIX + rules.promotion_reason(assessment.promotion, percent=config.canary_percent)
    last_rung = not [rung for rung in canary_ladder() if rung > config.canary_basis_points]
    service, result = (services.canary_promote, "promoted") if last_rung else (services.canary_step, "stepped")
    try:
        moved = service(product=config.product, user=None, reason=reason, from_basis_points=config.canary_basis_points)
    except LifecycleError as exc:
        verdict.result, verdict.message = "skipped", str(exc)
        return verdict
    verdict.result = result
    verdict.message = reason.removeprefix(GUARD_PREFIX)
    verdict.measured = {**verdict.measured, "promotion": [check.record for check in assessment.promotion]}
    PROMOTIONS.labels(product=config.product, to="production" if last_rung else f"{moved.canary_percent:g}").inc()
    logger.info(
        "rollout guard %s the canary %s of %s from %s%%: %s",
        result,
        config.canary_model,
        config.product,
        f"{config.canary_percent:g}",
        verdict.message,
        extra={"product": config.product, "canary": str(config.canary_model_id)},
    )
    return verdict


def rollout_guard_evaluate(*, now: datetime | None = None) -> list[Verdict]:
    """Judge every active canary once; stop the ones shown beyond a limit, move up the ones that may. One verdict per canary."""
    now = now or timezone.now()
    limits = rules.thresholds()
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


def rollout_guard_status(*, product: str, now: datetime | None = None) -> dict | None:
    """What the guard is waiting for on ``product``'s canary, per metric, for the rollout page (None: no active canary)."""
    config = selectors.active_canaries().filter(product=product).first()
    if config is None:
        return None
    now = now or timezone.now()
    limits = rules.thresholds()
    assessment = canary_assess(config, now=now, limits=limits)
    promotion = {check.metric: check for check in assessment.promotion or []}
    metrics = []
    for rate in assessment.rates:
        check = promotion.pop(rate.metric, None)
        if assessment.promotion is None:
            waiting = "automatic promotion is off"
        else:
            waiting = check.status if check is not None else "no shadow runs: not needed"
        metrics.append(
            {
                "metric": rate.metric,
                "label": rate.metric.replace("_", " "),
                "rollback": rules.rollback_status(rate),
                "promotion": waiting,
                "shown": None if check is None else check.shown,
            }
        )
    # A metric promotion checks but rollback cannot yet (latency before production answers).
    metrics += [
        {"metric": m, "label": m.replace("_", " "), "rollback": "waits for production answers", "promotion": c.status, "shown": c.shown}
        for m, c in promotion.items()
    ]
    return {
        "since": assessment.since.isoformat(),
        "auto_promote": config.auto_promote,
        "percent": config.canary_percent,
        "metrics": metrics,
    }
