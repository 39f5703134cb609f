"""The population stability index of two histograms, and the histograms themselves. Pure: no database.

Bins. A baseline's bin edges are the quantiles of its reference values at 0, 1/k, ..., 1 (``k`` =
``DRIFT_BINS``, 10 by default), repeated edges merged (a discrete or constant feature has fewer
bins). The inner bins are ``[e_0, e_1), [e_1, e_2), ..., [e_{k-1}, e_k]``, and one overflow bin on
each side takes the values below ``e_0`` and above ``e_k``: ``len(edges) + 1`` counts in all. The
reference itself never falls in the overflow bins; live values outside its range do.

PSI. With ``b_i`` and ``l_i`` the baseline's and the live window's shares of bin ``i``::

    PSI = sum_i (l_i - b_i) * ln(l_i / b_i)

each share taken as at least ``EPSILON`` so that an empty bin (the overflow bins of the baseline,
always) counts as a very rare one instead of dividing by zero. Every term is >= 0. Conventionally
PSI < 0.1 is stable, 0.1-0.25 a moderate shift, > 0.25 a significant one (``DRIFT_PSI_MODERATE``,
``DRIFT_PSI_SIGNIFICANT``). Sampling noise alone gives about ``(bins - 1) * (1/n_baseline +
1/n_live)``: keep the baseline and the window at least a few hundred rows each (``DRIFT_MIN_ROWS``).
"""

import math

import numpy as np

EPSILON = 1e-4

STABLE = "stable"
MODERATE = "moderate"
SIGNIFICANT = "significant"


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Bin edges from the finite ``values``: their quantiles at 0, 1/bins, ..., 1, repeats merged."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
    return [float(edge) for edge in edges]


def bin_counts(values: np.ndarray, edges: list[float]) -> list[int]:
    """Counts of the finite ``values`` per bin: underflow, the inner bins (the last one closed), overflow."""
    finite = values[np.isfinite(values)]
    if not edges:
        return []
    edge_array = np.asarray(edges, dtype=np.float64)
    index = np.searchsorted(edge_array, finite, side="right")  # 0: below e_0; len(edges): at or above e_k
    index[finite == edge_array[-1]] = len(edges) - 1  # the top edge belongs to the last inner bin
    return [int(count) for count in np.bincount(index, minlength=len(edges) + 1)]


def psi(baseline: list[int], live: list[int]) -> float | None:
    """PSI of the ``live`` counts against the ``baseline`` counts (same bins), or None when either is empty."""
    if len(baseline) != len(live):
        raise ValueError(f"{len(baseline)} baseline bins against {len(live)} live bins")
    base_total, live_total = sum(baseline), sum(live)
    if base_total == 0 or live_total == 0:
        return None
    total = 0.0
    for expected, actual in zip(baseline, live, strict=True):
        b = max(expected / base_total, EPSILON)
        a = max(actual / live_total, EPSILON)
        total += (a - b) * math.log(a / b)
    return total


def level(value: float | None, *, moderate: float, significant: float) -> str | None:
    """``stable``, ``moderate`` or ``significant`` for a PSI against the two thresholds (None for no value)."""
    if value is None:
        return None
    if value >= significant:
        return SIGNIFICANT
    if value >= moderate:
        return MODERATE
    return STABLE
