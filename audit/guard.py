"""The rollout guard: stops a canary that misbehaves, from what the prediction log already records.

For each active canary it reads the product's `PredictionLog` (and `Outcome`) rows over a
sliding window (``ROLLOUT_GUARD_WINDOW_SECONDS``, never earlier than the canary's start) and
compares, in this order:

1. error rate: canary attempts that failed over to production (rows with ``fallback_from`` =
   the canary) over all canary attempts, vs ``ROLLOUT_GUARD_MAX_ERROR_RATE``;
2. latency: the canary's p95 vs ``ROLLOUT_GUARD_LATENCY_RATIO`` x production's p95 over the
   same window (and at least ``ROLLOUT_GUARD_LATENCY_MIN_DELTA_MS`` above it);
3. false-positive rate: among canary answers whose outcome turned out negative, the share it
   blocked, vs ``ROLLOUT_GUARD_MAX_FP_RATE`` (only once ``ROLLOUT_GUARD_MIN_OUTCOMES`` exist);
4. shadow differences: the share of the canary model's shadow runs that differ significantly
   from production, vs ``ROLLOUT_GUARD_MAX_SIGNIFICANT_DIFF_RATE``.

Nothing is judged below ``ROLLOUT_GUARD_MIN_REQUESTS`` in the window. The first breach stops
the canary (`canary_stop`), writes a `RollbackEvent`, logs a warning and counts
``mlops_rollout_rollbacks_total``.

Where it runs: ``manage.py rollout_guard`` in production (one process); in the embedded
default a daemon thread of the serving process (``ROLLOUT_GUARD_IN_PROCESS``), where a lock in
the shared cache lets only one worker evaluate per interval.
"""

import logging
import math
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone
from prometheus_client import Counter

from audit.models import DiffClass, Outcome, PredictionLog
from mlops import selectors
from mlops.background import resilience
from mlops.choices import Decision, ModelRole
from mlops.models import CanaryConfig, RollbackEvent, RollbackReason
from mlops.services.lifecycle import LifecycleError
from mlops.services.rollout import canary_stop

logger = logging.getLogger(__name__)

ROLLBACKS = Counter("mlops_rollout_rollbacks", "Canaries stopped by the rollout guard.", ["product", "reason"])
EVALUATIONS = Counter("mlops_rollout_guard_evaluations", "Rollout guard evaluations of one canary, by result.", ["result"])

LOCK_KEY = "rollout-guard-lock"


# --- Reading the prediction log ----------------------------------------------------------------


def percentile(queryset, fraction: float, *, count: int | None = None) -> float | None:
    """The nearest-rank percentile of ``latency_ms`` in ``queryset`` (one ordered query, any database)."""
    count = queryset.count() if count is None else count
    if not count:
        return None
    rank = max(1, math.ceil(fraction * count))
    return queryset.order_by("latency_ms").values_list("latency_ms", flat=True)[rank - 1]


def canary_measure(*, product: str, canary_model_id, start: datetime, end: datetime) -> dict:
    """What the log says about one canary between ``start`` and ``end``."""
    rows = PredictionLog.objects.filter(product=product, created_at__gte=start, created_at__lt=end)
    answered = rows.filter(role=ModelRole.CANARY, model_version_id=canary_model_id, fallback_from__isnull=True)
    failed = rows.filter(fallback_from_id=canary_model_id)
    production = rows.filter(role=ModelRole.PRODUCTION, fallback_from__isnull=True)
    answered_count, failed_count, production_count = answered.count(), failed.count(), production.count()
    attempts = answered_count + failed_count

    negative = Outcome.objects.filter(product=OuterRef("product"), label=False).filter(
        Q(prediction_id=OuterRef("prediction_id")) | Q(prediction_id__isnull=True, event_id=OuterRef("event_id"))
    )
    judged = answered.filter(Exists(negative)).aggregate(negatives=Count("pk"), blocked=Count("pk", filter=Q(decision=Decision.BLOCK)))

    shadows = rows.filter(role=ModelRole.SHADOW, model_version_id=canary_model_id).exclude(diff_class="")
    shadow = shadows.aggregate(total=Count("pk"), significant=Count("pk", filter=Q(diff_class=DiffClass.SIGNIFICANT)))

    return {
        "canary_attempts": attempts,
        "canary_answered": answered_count,
        "canary_errors": failed_count,
        "error_rate": failed_count / attempts if attempts else None,
        "canary_p95_ms": percentile(answered, 0.95, count=answered_count),
        "production_requests": production_count,
        "production_p95_ms": percentile(production, 0.95, count=production_count),
        "outcome_negatives": judged["negatives"],
        "false_positives": judged["blocked"],
        "fp_rate": judged["blocked"] / judged["negatives"] if judged["negatives"] else None,
        "shadow_runs": shadow["total"],
        "shadow_significant": shadow["significant"],
        "significant_diff_rate": shadow["significant"] / shadow["total"] if shadow["total"] else None,
    }


def role_stats(*, product: str, minutes: int, now: datetime | None = None) -> dict:
    """Requests, errors and p95 per role over the last ``minutes``, and per-minute request counts for a chart."""
    now = now or timezone.now()
    start = now - timedelta(minutes=minutes)
    rows = PredictionLog.objects.filter(product=product, created_at__gte=start, created_at__lt=now)
    roles = {}
    for role in ModelRole.values:
        answered = rows.filter(role=role, fallback_from__isnull=True)
        count = answered.count()
        errors = rows.filter(fallback_from__isnull=False).count() if role == ModelRole.CANARY else None
        roles[role] = {"requests": count + (errors or 0), "errors": errors, "p95_ms": percentile(answered, 0.95, count=count)}
    shadow = (
        rows.filter(role=ModelRole.SHADOW)
        .exclude(diff_class="")
        .aggregate(total=Count("pk"), significant=Count("pk", filter=Q(diff_class=DiffClass.SIGNIFICANT)))
    )
    roles[ModelRole.SHADOW]["significant_diffs"] = shadow["significant"]
    per_minute = (
        rows.annotate(minute=TruncMinute("created_at"))
        .values("minute", "role")
        .annotate(n=Count("pk"), errors=Count("pk", filter=Q(fallback_from__isnull=False)))
        .order_by("minute")
    )
    first_minute = start.replace(second=0, microsecond=0)
    labels = [first_minute + timedelta(minutes=i) for i in range(minutes + 1)]
    series = {role: [0] * len(labels) for role in [*ModelRole.values, "errors"]}
    for row in per_minute:
        index = int((row["minute"] - first_minute).total_seconds() // 60)
        if 0 <= index < len(labels):
            series[row["role"]][index] += row["n"]
            series["errors"][index] += row["errors"]
    return {
        "product": product,
        "minutes": minutes,
        "generated_at": now.isoformat(),
        "roles": roles,
        "chart": {"labels": [label.strftime("%H:%M") for label in labels], "series": series},
    }


# --- Judging ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    product: str
    canary: str
    result: str  # "healthy", "insufficient_data", "rolled_back", "skipped"
    reason: str = ""
    message: str = ""
    measured: dict = field(default_factory=dict)
    event: RollbackEvent | None = None

    def line(self) -> str:
        text = f"{self.product}: canary {self.canary} {self.result.replace('_', ' ')}"
        return f"{text}: {self.message}" if self.message else text


def _thresholds() -> dict:
    return {
        "window_seconds": settings.ROLLOUT_GUARD_WINDOW_SECONDS,
        "min_requests": settings.ROLLOUT_GUARD_MIN_REQUESTS,
        "max_error_rate": settings.ROLLOUT_GUARD_MAX_ERROR_RATE,
        "latency_ratio": settings.ROLLOUT_GUARD_LATENCY_RATIO,
        "latency_min_delta_ms": settings.ROLLOUT_GUARD_LATENCY_MIN_DELTA_MS,
        "max_fp_rate": settings.ROLLOUT_GUARD_MAX_FP_RATE,
        "min_outcomes": settings.ROLLOUT_GUARD_MIN_OUTCOMES,
        "max_significant_diff_rate": settings.ROLLOUT_GUARD_MAX_SIGNIFICANT_DIFF_RATE,
    }


def judge(measured: dict, limits: dict) -> tuple[str, str] | None:
    """The first breach as ``(reason, message)``, or None. Pure: no database."""
    enough = measured["canary_attempts"] >= limits["min_requests"]
    if enough and measured["error_rate"] is not None and measured["error_rate"] > limits["max_error_rate"]:
        return RollbackReason.HIGH_ERROR_RATE, (
            f"error rate {measured['error_rate']:.1%} ({measured['canary_errors']}/{measured['canary_attempts']}) "
            f"above {limits['max_error_rate']:.1%}"
        )
    canary_p95, production_p95 = measured["canary_p95_ms"], measured["production_p95_ms"]
    if (
        measured["canary_answered"] >= limits["min_requests"]
        and measured["production_requests"] >= limits["min_requests"]
        and canary_p95 is not None
        and production_p95 is not None
        and canary_p95 > limits["latency_ratio"] * production_p95
        and canary_p95 - production_p95 >= limits["latency_min_delta_ms"]
    ):
        return RollbackReason.HIGH_LATENCY, (
            f"p95 {canary_p95:.1f} ms above {limits['latency_ratio']:g} x production p95 {production_p95:.1f} ms"
        )
    if measured["outcome_negatives"] >= limits["min_outcomes"] and measured["fp_rate"] > limits["max_fp_rate"]:
        return RollbackReason.FP_RATE_THRESHOLD, (
            f"false-positive rate {measured['fp_rate']:.1%} ({measured['false_positives']}/{measured['outcome_negatives']}) "
            f"above {limits['max_fp_rate']:.1%}"
        )
    if measured["shadow_runs"] >= limits["min_requests"] and measured["significant_diff_rate"] > limits["max_significant_diff_rate"]:
        return RollbackReason.SHADOW_SIGNIFICANT_DIFF, (
            f"significant shadow differences {measured['significant_diff_rate']:.1%} "
            f"({measured['shadow_significant']}/{measured['shadow_runs']}) above {limits['max_significant_diff_rate']:.1%}"
        )
    return None


def evaluate_canary(config: CanaryConfig, *, now: datetime, limits: dict) -> Verdict:
    window = timedelta(seconds=limits["window_seconds"])
    start = now - window
    if config.started_at and config.started_at > start:
        start = config.started_at  # judge a (re)started canary on its own traffic only
    measured = canary_measure(product=config.product, canary_model_id=config.canary_model_id, start=start, end=now)
    verdict = Verdict(product=config.product, canary=str(config.canary_model), result="healthy", measured=measured)
    if measured["canary_attempts"] < limits["min_requests"] and measured["shadow_runs"] < limits["min_requests"]:
        verdict.result = "insufficient_data"
        verdict.message = f"{measured['canary_attempts']} canary requests in the window, fewer than {limits['min_requests']}"
    breach = judge(measured, limits)
    if breach is None:
        return verdict
    reason, message = breach
    verdict.reason, verdict.message = reason, message
    try:
        with transaction.atomic():
            stopped = canary_stop(product=config.product, user=None, reason=f"automatic rollback ({reason}): {message}")
            verdict.event = RollbackEvent.objects.create(
                product=config.product,
                model_version_id=config.canary_model_id,
                production_model_id=config.production_model_id,
                reason=reason,
                canary_basis_points=config.canary_basis_points,
                measured={**measured, "thresholds": limits},
                window_seconds=int((now - start).total_seconds()),
                window_start=start,
                window_end=now,
                message=message[:500],
                created_at=now,
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
        extra={"product": config.product, "reason": reason, "canary": str(stopped.canary_model_id)},
    )
    return verdict


def rollout_guard_evaluate(*, now: datetime | None = None) -> list[Verdict]:
    """Judge every active canary once; stop the ones that breach. One verdict per canary."""
    now = now or timezone.now()
    limits = _thresholds()
    verdicts = []
    for config in selectors.active_canaries():
        try:
            verdict = evaluate_canary(config, now=now, limits=limits)
        except Exception:  # one product's failure must not stop the guard for the others
            logger.exception("rollout guard could not evaluate the canary of %s", config.product)
            verdict = Verdict(product=config.product, canary=str(config.canary_model), result="error")
        EVALUATIONS.labels(result=verdict.result).inc()
        verdicts.append(verdict)
    return verdicts


# --- Running ----------------------------------------------------------------------------------


def acquire_turn(interval: float) -> bool:
    """True for one caller per ``interval`` across every process sharing the cache."""
    try:
        return cache.add(LOCK_KEY, f"{os.getpid()}:{uuid.uuid4().hex[:8]}", timeout=max(1, int(interval * 0.9)))
    except Exception:
        logger.warning("rollout guard could not reach the shared cache; skipping this turn", exc_info=True)
        return False


def run_forever(*, interval: float, stop: threading.Event, use_lock: bool = True, report=None) -> None:
    """Evaluate every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        started = time.monotonic()
        if not use_lock or acquire_turn(interval):
            close_old_connections()
            try:
                for verdict in resilience.database_call("rollout_guard", rollout_guard_evaluate):
                    if report is not None:
                        report(verdict)
            except resilience.DependencyUnavailable:  # an open circuit has its metric; next turn tries again
                pass
            except Exception:
                logger.exception("rollout guard evaluation failed")
            finally:
                close_old_connections()
        stop.wait(max(0.1, interval - (time.monotonic() - started)))


_thread: threading.Thread | None = None
_thread_pid: int | None = None
_thread_lock = threading.Lock()
_stop = threading.Event()


def serving_process(argv: list[str] | None = None, environ=None) -> bool:
    """Whether this process serves requests (and so may host the in-process guard).

    Management commands, migrations and test runs never start the thread; under ``runserver``
    only the reloader's child does.
    """
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if not argv:
        return False
    program = Path(argv[0]).name
    if program in {"daphne", "gunicorn", "granian", "uwsgi", "uvicorn"}:
        return True
    if len(argv) > 1 and argv[1] == "runserver":
        return environ.get("RUN_MAIN") == "true" or "--noreload" in argv
    return False


def start_in_process() -> bool:
    """Start the guard thread of this process once (the embedded default). Returns whether it started."""
    global _thread, _thread_pid
    with _thread_lock:
        if _thread is not None and _thread.is_alive() and _thread_pid == os.getpid():
            return False
        _stop.clear()
        interval = settings.ROLLOUT_GUARD_INTERVAL_SECONDS
        _thread = threading.Thread(target=run_forever, kwargs={"interval": interval, "stop": _stop}, name="rollout-guard", daemon=True)
        _thread_pid = os.getpid()
        _thread.start()
        logger.info("rollout guard running in this process every %gs", interval)
        return True


def stop_in_process(timeout: float = 5.0) -> None:
    _stop.set()
    if _thread is not None:
        _thread.join(timeout)
