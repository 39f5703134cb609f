"""Rates and differences of rates, with their uncertainty.

- A rate's interval is Wilson's score interval (the closed form of `scipy.stats.binomtest(...).proportion_ci`): unlike
  the normal approximation it stays inside [0, 1] and keeps its coverage at 0 of 5 or 3 of 1,000,
  which is where canaries live.
- The difference of two rates gets Newcombe's hybrid score interval (method 10 of Newcombe 1998),
  built from the two Wilson intervals, and Fisher's exact test for its p-value: exact at any
  sample size, so "0 of 5 against 40 of 1,000" is reported as the nothing it is (p = 1.0).
- ``observations_needed`` is the classic two-proportion sample size (normal approximation, two
  sided, with the allocation the traffic split gives), used to say how far a small sample is from
  being able to detect a given difference.
"""

import functools
import math

from scipy import stats

CONFIDENCE = 0.95
POWER = 0.8


def rate(count: int, total: int, *, confidence: float = CONFIDENCE) -> dict:
    """``count`` of ``total`` as ``{count, total, value, low, high}``; value and bounds None when ``total`` is 0."""
    if total <= 0:
        return {"count": count, "total": total, "value": None, "low": None, "high": None}
    value, z = count / total, _z(confidence)
    # Wilson's score interval in closed form: scipy's binomtest computes its exact p-value first, 300 µs
    # a rate, and every health has ten.
    centre, spread = value + z * z / (2 * total), z * math.sqrt(value * (1 - value) / total + z * z / (4 * total * total))
    scale = 1 + z * z / total
    low, high = (centre - spread) / scale, (centre + spread) / scale
    return {"count": count, "total": total, "value": value, "low": max(0.0, low), "high": min(1.0, high)}


@functools.cache
def _z(confidence: float) -> float:
    return float(stats.norm.ppf(1 - (1 - confidence) / 2))


def rate_difference(a: dict, b: dict, *, confidence: float = CONFIDENCE) -> dict:
    """``a`` minus ``b`` (two results of `rate` at the same confidence): the difference, its interval, p-value.

    None figures when either side has no observations.
    """
    if a["value"] is None or b["value"] is None:
        return {"difference": None, "low": None, "high": None, "p_value": None}
    p1, p2 = a["value"], b["value"]
    difference = p1 - p2
    low = difference - math.sqrt((p1 - a["low"]) ** 2 + (b["high"] - p2) ** 2)
    high = difference + math.sqrt((a["high"] - p1) ** 2 + (p2 - b["low"]) ** 2)
    table = [[a["count"], a["total"] - a["count"]], [b["count"], b["total"] - b["count"]]]
    p_value = float(stats.fisher_exact(table).pvalue)
    return {"difference": difference, "low": max(-1.0, low), "high": min(1.0, high), "p_value": min(1.0, p_value)}


def observations_needed(
    base_rate: float, detectable: float, *, ratio: float = 1.0, confidence: float = CONFIDENCE, power: float = POWER
) -> int:
    """Observations on side *a* to detect ``a - b = detectable`` when *b*'s rate is ``base_rate``.

    ``ratio`` is b's observations per a's (production's share over the canary's). A two-sided test
    at ``1 - confidence`` with the given power; the normal approximation, rounded up.
    """
    p2 = min(max(base_rate, 0.0), 1.0)
    p1 = min(max(p2 + detectable, 0.0), 1.0)
    if p1 == p2:
        return 0
    ratio = max(ratio, 1e-9)
    pooled = (p1 + ratio * p2) / (1 + ratio)
    z_alpha = stats.norm.ppf(1 - (1 - confidence) / 2)
    z_beta = stats.norm.ppf(power)
    spread = z_alpha * math.sqrt(pooled * (1 - pooled) * (1 + 1 / ratio)) + z_beta * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2) / ratio)
    return math.ceil((spread / (p1 - p2)) ** 2)


def more_needed(a: dict, b: dict, detectable: float) -> int | None:
    """How many more observations side *a* needs before a difference of ``detectable`` could be seen.

    0 when it has enough; None when *b* has none to compare with.
    """
    if b["value"] is None:
        return None
    ratio = b["total"] / a["total"] if a["total"] else 1.0
    return max(0, observations_needed(b["value"], detectable, ratio=ratio) - a["total"])
