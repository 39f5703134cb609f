"""The rollout guard's judgement: the thresholds, and the first one a canary's measurements breach.

Pure: no database, no clock. `audit.guard.services` measures and acts; this only decides.
"""

from dataclasses import dataclass, field

from django.conf import settings

from mlops.models import RollbackEvent, RollbackReason


@dataclass
class Verdict:
    product: str
    canary: str
    result: str  # "healthy", "insufficient_data", "rolled_back", "skipped", "error"
    reason: str = ""
    message: str = ""
    measured: dict = field(default_factory=dict)
    event: RollbackEvent | None = None

    def line(self) -> str:
        text = f"{self.product}: canary {self.canary} {self.result.replace('_', ' ')}"
        return f"{text}: {self.message}" if self.message else text


def thresholds() -> dict:
    """The ``ROLLOUT_GUARD_*`` limits, read once per evaluation (and recorded with a rollback)."""
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


def enough_data(measured: dict, limits: dict) -> bool:
    """Whether the window holds enough canary attempts or shadow runs to say anything."""
    return measured["canary_attempts"] >= limits["min_requests"] or measured["shadow_runs"] >= limits["min_requests"]


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
