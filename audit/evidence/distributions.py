"""Two samples of a continuous figure (scores, latencies) compared.

- Mann-Whitney U (`scipy.stats.mannwhitneyu`) asks whether one side tends to be larger; its effect
  size is the probability of superiority, P(a > b) + P(a = b) / 2 (0.5: no tendency), which reads
  the same whatever the units.
- Kolmogorov-Smirnov (`scipy.stats.ks_2samp`) asks whether the distributions differ at all, shape
  included; its statistic is the largest gap between the two CDFs (p exact for small samples,
  asymptotic from `KS_ASYMPTOTIC_FROM` values a side).
- The p95 ratio's interval comes from the distribution-free confidence interval of each quantile
  (`scipy.stats.quantile_test`, order statistics: no assumption on the shape of latencies), each
  at sqrt(confidence) so that both hold together with the stated confidence.
"""

import math

import numpy as np
from scipy import stats

from audit.evidence.proportions import CONFIDENCE

# From this many values on each side, KS's p-value is the asymptotic one (0.0050 where the exact is
# 0.0053 at 1,000 a side, closer above) rather than scipy's exact computation, whose cost grows with
# n1 * n2 (20 ms a segment bin of a few thousand).
KS_ASYMPTOTIC_FROM = 1_000


def distribution_difference(a, b) -> dict:
    """``a`` against ``b``: both tests and the effect size; None figures when a side is empty."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    figures = {"n": [int(a.size), int(b.size)], "mann_whitney_p": None, "superiority": None, "ks_statistic": None, "ks_p": None}
    if a.size == 0 or b.size == 0:
        return figures
    mann_whitney = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    ks = stats.ks_2samp(a, b, method="asymp" if min(a.size, b.size) >= KS_ASYMPTOTIC_FROM else "auto")
    figures.update(
        mann_whitney_p=_finite(mann_whitney.pvalue),
        superiority=float(mann_whitney.statistic) / (a.size * b.size),
        ks_statistic=float(ks.statistic),
        ks_p=_finite(ks.pvalue),
    )
    return figures


def quantile_interval(values, q: float, *, confidence: float) -> tuple[float, float] | None:
    """The ``q`` quantile's distribution-free interval; None when the sample is too small for one."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return None
    interval = stats.quantile_test(values, p=q).confidence_interval(confidence_level=confidence)
    low, high = float(interval.low), float(interval.high)
    return None if math.isnan(low) or math.isnan(high) else (low, high)


def quantile_ratio(a, b, *, q: float = 0.95, confidence: float = CONFIDENCE) -> dict:
    """``a``'s ``q`` quantile over ``b``'s, with an interval; bounds None when a sample is too small.

    A bound the sample cannot give (too few values above the quantile) is None: the ratio could be
    anything on that side.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return {"ratio": None, "low": None, "high": None}
    qa, qb = float(np.quantile(a, q)), float(np.quantile(b, q))
    each = math.sqrt(confidence)
    interval_a, interval_b = quantile_interval(a, q, confidence=each), quantile_interval(b, q, confidence=each)
    ratio = qa / qb if qb > 0 else None
    low = high = None
    if interval_a and interval_b:
        low = interval_a[0] / interval_b[1] if interval_b[1] > 0 else None
        high = interval_a[1] / interval_b[0] if interval_b[0] > 0 else None
    return {"ratio": ratio, "low": _finite(low), "high": _finite(high)}


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
