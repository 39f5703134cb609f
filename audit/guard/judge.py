"""The rollout guard's judgement: each metric's sequential test, the first breach, and whether a
canary may move up. Pure: numbers in, verdict out (no database, no clock).

`audit.guard.services` gathers the numbers (`audit.selectors.rollout.rollout_observations`) and
acts on the result; this only decides.

Every metric is a Bernoulli rate tested with the mixture SPRT of `audit.evidence.sequential`,
over all of the canary's observations since it started (rollback) or since it reached its
current share (promotion), so a decision stays valid however often the guard looks:

- rollback: the rate is shown *above* its limit (`beyond(..., above=True)`, one-sided 2.5%);
- promotion: every rate is shown on the good side of its margin (``above=False``), the FP rate
  by the canary's confidence-sequence upper bound against production's lower bound plus the margin.
"""

from dataclasses import dataclass, field

from django.conf import settings

from audit.evidence.sequential import ALPHA, beyond, confidence_sequence, observations_to_decide, p_value, prior_for
from mlops.models import RollbackEvent, RollbackReason

METHOD = "mixture SPRT (Bernoulli, Beta prior), always-valid p-value and 95% confidence sequence"
SLOW_SHARE = 0.05  # "p95 above L" <=> "more than 5% of answers slower than L"


@dataclass
class Verdict:
    product: str
    canary: str
    result: str  # "healthy", "insufficient_data", "rolled_back", "stepped", "promoted", "skipped", "error"
    reason: str = ""
    message: str = ""
    measured: dict = field(default_factory=dict)
    event: RollbackEvent | None = None

    def line(self) -> str:
        text = f"{self.product}: canary {self.canary} {self.result.replace('_', ' ')}"
        return f"{text}: {self.message}" if self.message else text


def thresholds() -> dict:
    """The ``ROLLOUT_GUARD_*`` and ``ROLLOUT_PROMOTE_*`` limits, read once per evaluation (and recorded with a decision)."""
    return {
        "min_requests": settings.ROLLOUT_GUARD_MIN_REQUESTS,
        "max_error_rate": settings.ROLLOUT_GUARD_MAX_ERROR_RATE,
        "latency_ratio": settings.ROLLOUT_GUARD_LATENCY_RATIO,
        "latency_min_delta_ms": settings.ROLLOUT_GUARD_LATENCY_MIN_DELTA_MS,
        "max_fp_rate": settings.ROLLOUT_GUARD_MAX_FP_RATE,
        "min_outcomes": settings.ROLLOUT_GUARD_MIN_OUTCOMES,
        "max_significant_diff_rate": settings.ROLLOUT_GUARD_MAX_SIGNIFICANT_DIFF_RATE,
        "promote_min_requests": settings.ROLLOUT_PROMOTE_MIN_REQUESTS,
        "promote_min_outcomes": settings.ROLLOUT_PROMOTE_MIN_OUTCOMES,
        "promote_max_error_rate": settings.ROLLOUT_PROMOTE_MAX_ERROR_RATE,
        "promote_latency_margin": settings.ROLLOUT_PROMOTE_LATENCY_MARGIN,
        "promote_fp_margin": settings.ROLLOUT_PROMOTE_FP_MARGIN,
        "promote_max_significant_diff_rate": settings.ROLLOUT_PROMOTE_MAX_SIGNIFICANT_DIFF_RATE,
    }


def latency_bound(production_p95_ms: float | None, limits: dict) -> float | None:
    """L: the latency the canary's p95 may not exceed, from production's p95 over the same period."""
    if production_p95_ms is None:
        return None
    return max(limits["latency_ratio"] * production_p95_ms, production_p95_ms + limits["latency_min_delta_ms"])


def promotion_latency_bound(production_p95_ms: float | None, limits: dict) -> float | None:
    """The latency fewer than 5% of the canary's answers may exceed for it to move up."""
    return None if production_p95_ms is None else production_p95_ms * (1 + limits["promote_latency_margin"])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


@dataclass(frozen=True)
class Rate:
    """One metric's observations: ``count`` of ``total`` against ``limit``, and both sides' sample sizes."""

    metric: str
    reason: str  # the RollbackReason it stops the canary for
    unit: str  # what ``total`` counts, for people: "requests", "answers", "outcomes", "shadow runs"
    count: int
    total: int
    limit: float
    floor: int
    samples: dict  # {"canary": n, "production": n}
    extra: dict = field(default_factory=dict)  # e.g. the latency bound

    @property
    def estimate(self) -> float | None:
        return self.count / self.total if self.total else None

    @property
    def judged(self) -> bool:
        return self.total >= max(self.floor, 1)

    def interval(self) -> dict:
        sequence = confidence_sequence(self.count, self.total, prior=prior_for(self.limit))
        return {"low": sequence["low"], "high": sequence["high"], "confidence": 1 - ALPHA}

    def record(self, *, above: bool = True) -> dict:
        """What a RollbackEvent (or a promotion's history) keeps of this test."""
        return {
            "metric": self.metric,
            "statistic": {"count": self.count, "total": self.total, "estimate": self.estimate},
            "interval": self.interval(),
            "p_value": p_value(self.count, self.total, self.limit, above=above) if self.total else None,
            "limit": self.limit,
            "samples": self.samples,
            "method": METHOD,
            **self.extra,
        }


def rollback_rates(observations: dict, limits: dict) -> list[Rate]:
    """The four rates the guard stops a canary on, from `rollout_observations` over its whole run."""
    canary, production = observations["canary"], observations["production"]
    rates = [
        Rate(
            "error_rate", RollbackReason.HIGH_ERROR_RATE, "requests", canary["failovers"], canary["requests"],
            limits["max_error_rate"], limits["min_requests"], {"canary": canary["requests"], "production": production["answered"]},
        ),
    ]  # fmt: skip
    if observations["latency_bound_ms"] is not None:
        rates.append(
            Rate(
                "latency", RollbackReason.HIGH_LATENCY, "answers", observations["canary_slower"], canary["answered"], SLOW_SHARE,
                limits["min_requests"], {"canary": canary["answered"], "production": production["answered"]},
                {"latency_bound_ms": observations["latency_bound_ms"], "production_p95_ms": production["p95_ms"],
                 "canary_p95_ms": canary["p95_ms"]},
            )
        )  # fmt: skip
    rates.append(
        Rate(
            "false_positive_rate", RollbackReason.FP_RATE_THRESHOLD, "outcomes", canary["false_positives"], canary["negatives"],
            limits["max_fp_rate"], limits["min_outcomes"], {"canary": canary["negatives"], "production": production["negatives"]},
        )
    )  # fmt: skip
    rates.append(
        Rate(
            "shadow_significant_diff", RollbackReason.SHADOW_SIGNIFICANT_DIFF, "shadow runs", canary["shadow_significant"],
            canary["shadow_classified"], limits["max_significant_diff_rate"], limits["min_requests"],
            {"canary": canary["shadow_classified"], "production": production["answered"]},
        )
    )  # fmt: skip
    return rates


def breached(rate: Rate) -> bool:
    """The rate is shown above its limit (and is past the floor)."""
    return rate.judged and beyond(rate.count, rate.total, rate.limit, above=True)


def judge(observations: dict, limits: dict) -> Rate | None:
    """The first rate shown beyond its limit, or None."""
    return next((rate for rate in rollback_rates(observations, limits) if breached(rate)), None)


def breach_message(rate: Rate) -> str:
    interval = rate.interval()
    text = (
        f"{rate.metric.replace('_', ' ')} {rate.estimate:.1%} ({rate.count}/{rate.total} {rate.unit}, "
        f"95% sequence {_percent(interval['low'])}-{_percent(interval['high'])}) shown above {rate.limit:.1%}"
    )
    if rate.metric == "latency":
        text += f" (share slower than {rate.extra['latency_bound_ms']:.1f} ms)"
    return text


def rollback_status(rate: Rate) -> str:
    """What the guard is waiting for before it would stop the canary on this rate."""
    if not rate.judged:
        return f"judged from {rate.floor} {rate.unit} ({rate.total} so far)"
    if breached(rate):
        return f"rolls back: {breach_message(rate)}"
    interval = rate.interval()
    now = f"{_percent(rate.estimate)} (sequence {_percent(interval['low'])}-{_percent(interval['high'])}), limit {rate.limit:.1%}"
    more = observations_to_decide(rate.count, rate.total, rate.limit, above=True)
    if more:
        return f"{now}: rolls back after ~{more} more {rate.unit} if it stays at {_percent(rate.estimate)}"
    return f"{now}: rolls back if shown above the limit"


# --- Promotion ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    """One metric's non-inferiority at the current step: shown or not, and what it waits for."""

    metric: str
    shown: bool
    status: str
    record: dict


def _min_sample(total: int, minimum: int, unit: str, percent: float) -> str | None:
    if total < minimum:
        return f"needs {minimum - total} more {unit} at {percent:g}%"
    return None


def _below(metric: str, count: int, total: int, margin: float, unit: str, percent: float, minimum: int, samples: dict) -> Promotion:
    """Non-inferiority of a rate against an absolute margin: shown below it by the sequential test."""
    rate = Rate(metric, "", unit, count, total, margin, 0, samples)
    record = rate.record(above=False)
    waiting = _min_sample(total, minimum, unit, percent)
    if waiting:
        return Promotion(metric, False, waiting, record)
    if beyond(count, total, margin, above=False):
        interval = record["interval"]
        return Promotion(metric, True, f"evidence: non-inferior ({_percent(interval['high'])} at most, margin {margin:.1%})", record)
    more = observations_to_decide(count, total, margin, above=False)
    if more:
        return Promotion(metric, False, f"needs ~{more} more {unit} at {percent:g}% at the current rate", record)
    return Promotion(metric, False, f"{_percent(rate.estimate)} is not below the margin {margin:.1%}", record)


def promotion_checks(step: dict, limits: dict, *, percent: float) -> list[Promotion]:
    """Each metric's non-inferiority at the current step (``percent``), from `rollout_observations` since the step began."""
    canary, production = step["canary"], step["production"]
    samples = {"canary": canary["requests"], "production": production["answered"]}
    minimum = limits["promote_min_requests"]
    error_margin = limits["promote_max_error_rate"]
    checks = [_below("error_rate", canary["failovers"], canary["requests"], error_margin, "requests", percent, minimum, samples)]
    if step["promotion_latency_bound_ms"] is None:
        checks.append(Promotion("latency", False, f"needs production answers at {percent:g}% to compare latency with", {}))
    else:
        latency = _below(
            "latency", step["canary_slower_promotion"], canary["answered"], SLOW_SHARE, "requests", percent, minimum,
            {"canary": canary["answered"], "production": production["answered"]},
        )  # fmt: skip
        latency.record["latency_bound_ms"] = step["promotion_latency_bound_ms"]
        checks.append(latency)
    checks.append(_fp_check(canary, production, limits, percent))
    if canary["shadow_classified"]:
        checks.append(
            _below(
                "shadow_significant_diff", canary["shadow_significant"], canary["shadow_classified"],
                limits["promote_max_significant_diff_rate"], "shadow runs", percent, limits["min_requests"],
                {"canary": canary["shadow_classified"], "production": production["answered"]},
            )
        )  # fmt: skip
    return checks


def _fp_check(canary: dict, production: dict, limits: dict, percent: float) -> Promotion:
    """Canary FP - production FP <= margin, conservatively: the canary's upper confidence-sequence bound
    at most production's lower bound plus the margin (each one-sided 2.5%, so 5% for the pair, at every look)."""
    margin, minimum = limits["promote_fp_margin"], limits["promote_min_outcomes"]
    prior = prior_for(limits["max_fp_rate"])
    mine = confidence_sequence(canary["false_positives"], canary["negatives"], prior=prior)
    theirs = confidence_sequence(production["false_positives"], production["negatives"], prior=prior)
    record = {
        "metric": "false_positive_rate",
        "statistic": {"count": canary["false_positives"], "total": canary["negatives"], "estimate": mine["value"]},
        "interval": {"low": mine["low"], "high": mine["high"], "confidence": 1 - ALPHA},
        "production": {"count": production["false_positives"], "total": production["negatives"], **theirs},
        "margin": margin,
        "samples": {"canary": canary["negatives"], "production": production["negatives"]},
        "method": f"{METHOD}; canary upper bound <= production lower bound + margin",
    }
    waiting = _min_sample(canary["negatives"], minimum, "outcomes", percent)
    if waiting:
        return Promotion("false_positive_rate", False, waiting, record)
    if not production["negatives"]:
        return Promotion("false_positive_rate", False, f"needs production outcomes at {percent:g}% to compare with", record)
    if mine["high"] <= theirs["low"] + margin:
        return Promotion("false_positive_rate", True, f"evidence: non-inferior (at most {_percent(mine['high'])} vs production "
                         f"at least {_percent(theirs['low'])} + {margin:.1%})", record)  # fmt: skip
    return Promotion(
        "false_positive_rate",
        False,
        f"not yet shown: canary up to {_percent(mine['high'])} vs production from {_percent(theirs['low'])} + {margin:.1%} "
        f"(more outcomes at {percent:g}% narrow both)",
        record,
    )


def promotion_reason(checks: list[Promotion], *, percent: float) -> str:
    """Why the guard moves the canary on: the figures of every metric."""
    parts = []
    for check in checks:
        statistic = check.record.get("statistic", {})
        high = check.record.get("interval", {}).get("high")
        parts.append(f"{check.metric.replace('_', ' ')} {statistic.get('count')}/{statistic.get('total')} (at most {_percent(high)})")
    return f"non-inferior at {percent:g}% on every metric: " + "; ".join(parts)
