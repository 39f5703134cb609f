"""Tests that stay valid however often they are looked at: the rollout guard's statistics.

A fixed-sample test checked every 10 s over a long canary is a test repeated hundreds of times:
an equal model is eventually "significantly worse" by chance. The guard instead uses, for each
rate it watches (errors, slow answers, false positives, significant shadow differences), a
*mixture sequential probability ratio test* (mSPRT; Robbins 1970, Johari et al. 2017):

    Λ_n = ∫ L_n(p) / L_n(limit) dπ(p),  over rates p beyond the limit,

the likelihood ratio of the canary's n observations (count k) averaged over a Beta prior π
restricted to the alternative. For a Bernoulli rate this is exact and closed form
(`scipy.special.betaln` and the Beta distribution's tail, `scipy.stats.beta`). Under the null
(the true rate is on the limit's good side) Λ_n is a non-negative supermartingale, so by Ville's
inequality P(Λ_n ever reaches 1/α) ≤ α: the decision "the rate is beyond the limit" may be taken
at the first look where Λ_n ≥ 1/α, looking after every request if we like, and 1/Λ_n is an
always-valid p-value. Nothing is approximated and no state is kept between looks: the guard
recomputes Λ from all of the canary's observations since it started.

Why this one rather than the alternatives: alpha spending (O'Brien-Fleming, Pocock) needs the
number and timing of looks fixed in advance, and the guard's looks follow traffic; the normal
approximation of the two-sample mSPRT misbehaves at the small counts a canary starts with
(0 errors of 40); a Bernoulli mixture is exact at every count. Inverting the two one-sided tests
at α/2 each gives a 95% *confidence sequence* for the rate: an interval that holds at every look
at once, which is what the rollout page and the RollbackEvent show.

The prior only moves power around, never validity: a Beta with mean twice the limit (at most
one half) and weight of one observation puts its mass on the rates a bad canary really has.
"""

import math

from scipy import optimize, special, stats

from audit.evidence.proportions import CONFIDENCE

ALPHA = 1 - CONFIDENCE  # two-sided; each one-sided decision spends half


def prior_for(limit: float) -> tuple[float, float]:
    """The Beta prior used around ``limit``: mean min(2 x limit, 0.5), weight of one observation."""
    mean = min(max(2 * limit, 1e-6), 0.5)
    return mean, 1 - mean


def log_evidence(count: int, total: int, limit: float, *, above: bool, prior: tuple[float, float] | None = None) -> float:
    """log Λ against "the rate is at most ``limit``" (``above``) or "at least ``limit``" (not ``above``)."""
    if total <= 0 or not 0 < limit < 1:
        return 0.0
    a, b = prior or prior_for(limit)
    misses = total - count
    tail = stats.beta.logsf if above else stats.beta.logcdf
    mixture = special.betaln(count + a, misses + b) + tail(limit, count + a, misses + b)
    at_limit = count * math.log(limit) + misses * math.log1p(-limit) + special.betaln(a, b) + tail(limit, a, b)
    return float(mixture - at_limit)


def beyond(count: int, total: int, limit: float, *, above: bool, prior=None, alpha: float = ALPHA) -> bool:
    """Whether the observations show, at one-sided level α/2, that the rate is above (or below) ``limit``."""
    return log_evidence(count, total, limit, above=above, prior=prior) >= math.log(2 / alpha)


def p_value(count: int, total: int, limit: float, *, above: bool, prior=None) -> float:
    """The always-valid p-value of "the rate is on the other side of ``limit``" (1 / Λ, at most 1)."""
    return min(1.0, math.exp(-log_evidence(count, total, limit, above=above, prior=prior)))


def confidence_sequence(count: int, total: int, *, prior: tuple[float, float], alpha: float = ALPHA) -> dict:
    """The rate's time-uniform interval ``{value, low, high}`` (None figures with no observations)."""
    if total <= 0:
        return {"value": None, "low": None, "high": None}
    estimate = count / total
    threshold = math.log(2 / alpha)
    eps = 1e-9

    def bound(above: bool) -> float:
        edge = eps if above else 1 - eps
        if log_evidence(count, total, edge, above=above, prior=prior) < threshold:
            return 0.0 if above else 1.0  # no rate on that side can be excluded yet
        inner = min(max(estimate, eps), 1 - eps)
        return optimize.brentq(lambda p: log_evidence(count, total, p, above=above, prior=prior) - threshold, *sorted((edge, inner)))

    return {"value": estimate, "low": bound(above=True), "high": bound(above=False)}


def observations_to_decide(
    count: int, total: int, limit: float, *, above: bool, prior=None, alpha: float = ALPHA, most: int = 10**7
) -> int | None:
    """More observations needed before `beyond` holds, if the rate stays at its current estimate.

    0 when it holds already; None when the estimate itself is not beyond the limit (then no
    amount of such data would show it) or when even ``most`` would not do.
    """
    if beyond(count, total, limit, above=above, prior=prior, alpha=alpha):
        return 0
    estimate = count / total if total else None
    if estimate is None or (estimate <= limit if above else estimate >= limit):
        return None
    decides = lambda n: beyond(round(estimate * n), n, limit, above=above, prior=prior, alpha=alpha)  # noqa: E731
    high = max(total, 1)
    while not decides(high):
        high *= 2
        if high > most:
            return None
    low = total
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if decides(middle) else (middle, high)
    return high - total
