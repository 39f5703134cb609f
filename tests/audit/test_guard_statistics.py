"""The rollout guard's statistics over simulated canaries: pure functions, no database.

An identical canary (the same error, latency, false-positive and shadow-difference rates as
production, all under their limits) watched every few requests over a long run is rarely rolled
back by the guard's sequential tests, where the old rule (the point estimate over a sliding
window against the same limits) rolls most of them back; a worse canary is stopped within a
few dozen requests. The figures are printed (``pytest -s``) for the README.

Each metric's decision is the guard's own (`audit.guard.judge.breached` on a `Rate`). Since a
rate shown above its limit with ``k`` of ``n`` stays shown with more of ``k`` (and needs at
least as many with more ``n``), the guard's decision at a look is "count >= c(n)", with
``c(n)`` found once per ``n`` from `breached` itself; thousands of looks then cost array
comparisons, not thousands of scipy calls.
"""

import numpy as np
import pytest

from audit.guard.judge import Rate, breached, latency_bound

SEED = 20261202
CANARIES = 300
REQUESTS = 5_000  # canary requests per simulated canary: at 10% of 17 req/s, about an hour
LOOK_EVERY = 20  # the guard looks every 10 s; at 2 canary requests a second that is 20 requests
WINDOW = 500  # the old rule's sliding window (ROLLOUT_GUARD_WINDOW_SECONDS=300 at ~1.7 canary requests/s)

LIMITS = {
    "min_requests": 20,
    "min_outcomes": 20,
    "max_error_rate": 0.05,
    "max_fp_rate": 0.05,
    "max_significant_diff_rate": 0.2,
    "latency_ratio": 1.3,
    "latency_min_delta_ms": 1.0,
}
OLD_MIN_REQUESTS, OLD_MIN_OUTCOMES = 50, 20  # the old defaults
LOOKS = np.arange(LOOK_EVERY, REQUESTS + 1, LOOK_EVERY)

PRODUCTION = {"error": 0.02, "fp": 0.04, "significant": 0.10, "negative": 0.3, "latency_median_ms": 5.0, "latency_sigma": 0.35}


def first_breaching_counts(limit: float, floor: int, most: int, totals=None) -> np.ndarray:
    """c(n) for n = 0..most (or only the ascending ``totals``): the smallest count the guard rolls back on
    with n observations (most + 1 when none)."""

    def rolls_back(count: int, total: int) -> bool:
        return breached(Rate("", "", "", count, total, limit, floor, {}))

    if totals is not None:  # only these totals (ascending): search upwards from the last one's threshold
        thresholds = np.full(most + 1, most + 1, dtype=np.int64)
        count = 0
        for total in totals:
            if total < floor or not rolls_back(total, total):
                continue
            step, low = 1, count - 1  # low: known not to roll back (or below any count)
            while not rolls_back(min(count, total), total):
                low, count, step = count, count + step, step * 2
            high = min(count, total)
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if not rolls_back(middle, total) else (low, middle)
            thresholds[total] = count = high
        return thresholds

    thresholds = np.full(most + 1, most + 1, dtype=np.int64)
    assigned = floor - 1  # totals up to here have their threshold (none below the floor)
    for count in range(most + 1):
        low = max(count, floor)
        if low > most or not rolls_back(count, low):
            continue
        high = most + 1  # the largest total at which ``count`` still rolls back, by bisection
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if rolls_back(count, middle) else (low, middle)
        thresholds[assigned + 1 : low + 1] = count
        assigned = max(assigned, low)
        if assigned >= most:
            break
    return thresholds


@pytest.fixture(scope="module")
def thresholds() -> dict[str, np.ndarray]:
    return {
        "error": first_breaching_counts(LIMITS["max_error_rate"], LIMITS["min_requests"], REQUESTS, totals=LOOKS),
        "slow": first_breaching_counts(0.05, LIMITS["min_requests"], REQUESTS),
        # Outcomes come for 30% of answers: half the requests is far above any canary's negatives.
        "fp": first_breaching_counts(LIMITS["max_fp_rate"], LIMITS["min_outcomes"], REQUESTS // 2),
        "significant": first_breaching_counts(LIMITS["max_significant_diff_rate"], LIMITS["min_requests"], REQUESTS, totals=LOOKS),
    }


def simulate(rng: np.random.Generator, *, error: float) -> dict[str, np.ndarray]:
    """Per canary and request: failed over, answered slower than L, negative outcome, blocked negative, significant shadow diff."""
    shape = (CANARIES, REQUESTS)
    failed = rng.random(shape) < error
    latency = PRODUCTION["latency_median_ms"] * np.exp(PRODUCTION["latency_sigma"] * rng.standard_normal(shape))
    # Production takes nine times the traffic, so its p95 is known far better than the canary's: the population value.
    production_p95 = PRODUCTION["latency_median_ms"] * np.exp(PRODUCTION["latency_sigma"] * 1.6448536)
    negative = ~failed & (rng.random(shape) < PRODUCTION["negative"])
    return {
        "failed": failed,
        "answered": ~failed,
        "latency": np.where(failed, np.nan, latency),
        "slow": ~failed & (latency > latency_bound(production_p95, LIMITS)),
        "negative": negative,
        "false_positive": negative & (rng.random(shape) < PRODUCTION["fp"]),
        "significant": rng.random(shape) < PRODUCTION["significant"],
        "production_p95": np.float64(production_p95),
    }


def sequential_first_rollback(run: dict, thresholds: dict) -> np.ndarray:
    """Per canary, the number of requests at the look where the guard first rolled it back (0: never)."""
    at = LOOKS - 1
    cumulative = {
        name: np.cumsum(run[name], axis=1)[:, at] for name in ("failed", "answered", "slow", "negative", "false_positive", "significant")
    }
    requests = np.broadcast_to(LOOKS, cumulative["failed"].shape)
    rolled = (
        (cumulative["failed"] >= thresholds["error"][requests])
        | (cumulative["slow"] >= thresholds["slow"][cumulative["answered"]])
        | (cumulative["false_positive"] >= thresholds["fp"][cumulative["negative"]])
        | (cumulative["significant"] >= thresholds["significant"][requests])  # one shadow run per request
    )
    first = np.where(rolled.any(axis=1), LOOKS[rolled.argmax(axis=1)], 0)
    return first


def old_rule_first_rollback(run: dict) -> dict[str, np.ndarray]:
    """Per metric and canary, the requests at the look where the old rule (fixed thresholds over the
    last WINDOW requests, the old minimum samples) first stopped it (0: never)."""
    first = {metric: np.zeros(CANARIES, dtype=np.int64) for metric in ("error", "latency", "fp", "significant")}
    bound = LIMITS["latency_ratio"] * run["production_p95"]
    for look in LOOKS:
        window = slice(max(0, look - WINDOW), look)
        attempts = look - window.start
        errors = run["failed"][:, window].sum(axis=1)
        answered = run["answered"][:, window].sum(axis=1)
        latency = np.sort(run["latency"][:, window], axis=1)  # NaN (failed) sort last
        rank = np.maximum(1, np.ceil(0.95 * answered).astype(int)) - 1
        canary_p95 = latency[np.arange(CANARIES), rank]
        negatives = run["negative"][:, window].sum(axis=1)
        false_positives = run["false_positive"][:, window].sum(axis=1)
        significant = run["significant"][:, window].sum(axis=1)
        enough = attempts >= OLD_MIN_REQUESTS
        slow = (
            (answered >= OLD_MIN_REQUESTS) & (canary_p95 > bound) & (canary_p95 - run["production_p95"] >= LIMITS["latency_min_delta_ms"])
        )
        breaches = {
            "error": enough & (errors / attempts > LIMITS["max_error_rate"]),
            "latency": slow,
            "fp": (negatives >= OLD_MIN_OUTCOMES) & (false_positives > LIMITS["max_fp_rate"] * np.maximum(negatives, 1)),
            "significant": enough & (significant / attempts > LIMITS["max_significant_diff_rate"]),
        }
        for metric, breach in breaches.items():
            first[metric] = np.where((first[metric] == 0) & breach, look, first[metric])
    return first


def old_rule_rolled_back(run: dict) -> np.ndarray:
    firsts = np.stack(list(old_rule_first_rollback(run).values()))
    return np.where(firsts > 0, firsts, REQUESTS + 1).min(axis=0)


def test_the_guard_decision_is_a_threshold_on_the_count():
    """What makes the simulation exact: more of the same count never undoes a rollback, more observations never hasten one."""
    for total in (20, 57, 400):
        decisions = [breached(Rate("", "", "", count, total, 0.05, 20, {})) for count in range(total + 1)]
        assert decisions == sorted(decisions)
    c = first_breaching_counts(0.05, 20, 600)
    assert np.all(np.diff(c[20:]) >= 0)
    # Both ways of finding c(n) agree, and each is the guard's own decision at its edge.
    looks = np.arange(20, 601, 20)
    assert np.array_equal(first_breaching_counts(0.05, 20, 600, totals=looks)[looks], c[looks])
    for total in looks:
        assert breached(Rate("", "", "", int(c[total]), int(total), 0.05, 20, {}))
        assert not breached(Rate("", "", "", int(c[total]) - 1, int(total), 0.05, 20, {}))


def test_an_identical_canary_is_rarely_rolled_back_and_far_less_often_than_by_the_old_rule(thresholds):
    run = simulate(np.random.default_rng(SEED), error=PRODUCTION["error"])

    sequential = (sequential_first_rollback(run, thresholds) > 0).mean()
    old_by_metric = {metric: (first > 0).mean() for metric, first in old_rule_first_rollback(run).items()}
    old = (old_rule_rolled_back(run) <= REQUESTS).mean()

    print(
        f"\nidentical canary, {CANARIES} canaries x {REQUESTS} requests, a look every {LOOK_EVERY} ({len(LOOKS)} looks): "
        f"false rollbacks sequential {sequential:.1%}, old fixed-threshold rule over a {WINDOW}-request window {old:.1%} "
        f"(by metric: {', '.join(f'{metric} {share:.1%}' for metric, share in old_by_metric.items())})"
    )
    assert sequential <= 0.025
    assert old > 0.2 and old > 5 * sequential


def test_a_worse_canary_is_rolled_back_within_a_few_dozen_requests(thresholds):
    run = simulate(np.random.default_rng(SEED + 1), error=0.15)

    first = sequential_first_rollback(run, thresholds)

    median = float(np.median(first))
    old = old_rule_first_rollback(run)["error"]
    print(
        f"\ncanary erring 15% (limit 5%): all {CANARIES} rolled back: {bool((first > 0).all())}; median {median:g} requests "
        f"(90th percentile {np.percentile(first, 90):g}); the old rule on errors: median {np.median(old):g}"
    )
    assert (first > 0).all()
    assert median <= 150


def test_a_canary_exactly_at_a_limit_is_rolled_back_at_most_as_often_as_the_test_allows(thresholds):
    """Ville's inequality in numbers: at the limit itself (5% errors), however often it looks, at most 2.5% are stopped."""
    rng = np.random.default_rng(SEED + 2)
    failed = rng.random((CANARIES * 4, REQUESTS)) < LIMITS["max_error_rate"]
    cumulative = np.cumsum(failed, axis=1)[:, LOOKS - 1]

    share = (cumulative >= thresholds["error"][LOOKS]).any(axis=1).mean()

    print(f"\ncanary erring exactly 5% (the limit), {CANARIES * 4} canaries: rolled back {share:.1%} (bound 2.5%)")
    assert share <= 0.025 + 2 * np.sqrt(0.025 * 0.975 / (CANARIES * 4))  # the bound, within two standard errors
