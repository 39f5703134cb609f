"""One side's health against another's, with the uncertainty of every difference.

Pure: takes what `audit.selectors.health` measured (and the sides' raw samples) and returns, for
each figure the rollout cares about, the difference with its 95% interval and p-value, and for
rates how many more observations the first side needs before a difference of ``detectable``
could be seen (the "needs N more outcomes" of the comparison page).
"""

from audit.evidence.distributions import distribution_difference, quantile_ratio
from audit.evidence.proportions import more_needed, rate_difference

# The rates compared, as (name, where the rate is in a health dict, what its denominators count).
RATES = (
    ("false_positive_rate", ("outcomes", "false_positive_rate"), "negative outcomes"),
    ("true_positive_rate", ("outcomes", "true_positive_rate"), "positive outcomes"),
    ("block_rate", ("decision_mix", "block"), "requests"),
)


def _at(health: dict, path: tuple[str, str]) -> dict:
    return health[path[0]][path[1]]


def rate_comparison(a: dict, b: dict, *, detectable: float, unit: str) -> dict:
    """Rate ``a`` against rate ``b`` (each `proportions.rate`): both, the difference and what is missing."""
    return {"a": a, "b": b, **rate_difference(a, b), "more_needed": more_needed(a, b, detectable), "unit": unit}


def compare(a: dict, b: dict, *, samples_a: dict, samples_b: dict, detectable: float) -> dict:
    """Side ``a`` (the canary) against side ``b`` (production): rates, score and latency distributions."""
    figures = {name: rate_comparison(_at(a, path), _at(b, path), detectable=detectable, unit=unit) for name, path, unit in RATES}
    figures["score"] = distribution_difference(samples_a["scores"], samples_b["scores"])
    figures["latency"] = {
        **distribution_difference(samples_a["latency_ms"], samples_b["latency_ms"]),
        "p95_ratio": quantile_ratio(samples_a["latency_ms"], samples_b["latency_ms"], q=0.95),
    }
    return figures
