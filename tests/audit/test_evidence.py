"""audit.evidence: the statistics against published values and their own promises (no database)."""

import numpy as np
import pytest
from scipy import stats

from audit.evidence.comparison import compare
from audit.evidence.distributions import distribution_difference, quantile_interval, quantile_ratio
from audit.evidence.proportions import more_needed, observations_needed, rate, rate_difference


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3 (Wilson).
@pytest.mark.parametrize(
    ("count", "total", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_the_published_values(count, total, low, high):
    figure = rate(count, total)
    assert figure["value"] == pytest.approx(count / total)
    assert (figure["low"], figure["high"]) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


@pytest.mark.parametrize(("count", "total"), [(0, 1), (1, 1), (3, 1000), (5, 5), (300, 20000), (19999, 20000), (0, 20000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_interval_is_scipys_at_the_edges_and_at_scale(count, total, confidence):
    interval = stats.binomtest(count, total).proportion_ci(confidence_level=confidence, method="wilson")
    figure = rate(count, total, confidence=confidence)
    assert (figure["low"], figure["high"]) == (pytest.approx(interval.low, abs=1e-12), pytest.approx(interval.high, abs=1e-12))


def test_a_rate_of_nothing_has_no_value_and_no_interval():
    assert rate(0, 0) == {"count": 0, "total": 0, "value": None, "low": None, "high": None}


# Newcombe (1998), "Interval estimation for the difference between independent proportions",
# Table II, method 10 (the hybrid score interval from two Wilson intervals).
@pytest.mark.parametrize(
    ("a", "b", "difference", "low", "high"),
    [
        ((56, 70), (48, 80), 0.2, 0.0524, 0.3339),
        ((9, 10), (3, 10), 0.6, 0.1705, 0.8090),
        ((6, 7), (2, 7), 4 / 7, 0.0582, 0.8062),
        ((5, 56), (0, 29), 5 / 56, -0.0381, 0.1926),
        ((0, 10), (0, 20), 0.0, -0.1611, 0.2775),
        ((10, 10), (0, 20), 1.0, 0.6791, 1.0),
    ],
)
def test_newcombe_interval_matches_the_published_examples(a, b, difference, low, high):
    figure = rate_difference(rate(*a), rate(*b))
    assert figure["difference"] == pytest.approx(difference)
    assert (figure["low"], figure["high"]) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_none_of_five_against_forty_of_a_thousand_is_reported_as_nothing():
    figure = rate_difference(rate(0, 5), rate(40, 1000))
    assert figure["difference"] == pytest.approx(-0.04)
    assert figure["p_value"] == pytest.approx(1.0)  # Fisher's exact test
    assert figure["low"] < 0 < figure["high"]


def test_a_clear_difference_has_a_small_fisher_p_value():
    figure = rate_difference(rate(30, 200), rate(10, 1000))
    assert figure["p_value"] < 1e-10 and figure["low"] > 0


def test_observations_needed_is_the_classic_two_proportion_size():
    # 10% against 5%, equal groups, two-sided 5%, power 80%: 435 per group (Fleiss, no continuity correction).
    assert observations_needed(0.05, 0.05) == 435
    # Production with ten times the canary's traffic: the canary needs fewer than with equal groups.
    assert observations_needed(0.05, 0.05, ratio=10) < 435


def test_more_needed_falls_to_zero_as_the_sample_grows_at_the_same_split():
    needed = [more_needed(rate(round(n * 0.05), n), rate(round(n * 10 * 0.04), n * 10), 0.02) for n in (10, 100, 500, 1000, 5000)]
    assert needed == sorted(needed, reverse=True) and needed[0] > needed[-1]
    assert needed[-1] == 0
    assert needed[0] - needed[1] == 90  # the same target, 90 observations nearer
    assert more_needed(rate(0, 5), rate(0, 0), 0.02) is None  # nothing to compare with


def test_equal_samples_have_no_tendency_and_a_shift_is_found():
    rng = np.random.default_rng(7)
    same = distribution_difference(rng.normal(0, 1, 400), rng.normal(0, 1, 400))
    assert 0.4 < same["superiority"] < 0.6 and same["mann_whitney_p"] > 0.01
    shifted = distribution_difference(rng.normal(0.5, 1, 400), rng.normal(0, 1, 400))
    assert shifted["superiority"] > 0.6 and shifted["mann_whitney_p"] < 1e-6 and shifted["ks_p"] < 1e-4
    assert distribution_difference([], [1.0])["mann_whitney_p"] is None


def test_the_p95_ratio_interval_covers_one_for_equal_latencies_at_least_as_often_as_promised():
    rng = np.random.default_rng(11)
    trials, covered = 200, 0
    for _ in range(trials):
        ratio = quantile_ratio(rng.lognormal(1, 0.5, 300), rng.lognormal(1, 0.5, 300), q=0.95)
        covered += ratio["low"] <= 1 <= ratio["high"]
    # Each quantile's interval is at sqrt(95%), so together they hold at least 95% (binomial slack: 200 trials).
    assert covered / trials >= 0.92


def test_the_p95_ratio_finds_a_slower_canary_and_admits_too_small_samples():
    rng = np.random.default_rng(3)
    slower = quantile_ratio(rng.lognormal(1, 0.5, 2000) * 1.5, rng.lognormal(1, 0.5, 2000), q=0.95)
    assert slower["low"] > 1.2 and slower["ratio"] == pytest.approx(1.5, rel=0.15)
    tiny = quantile_ratio([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], q=0.95)
    assert tiny["ratio"] == pytest.approx(1.0) and tiny["high"] is None  # three values cannot bound a p95 from above
    assert quantile_interval([1.0], 0.95, confidence=0.95) is None


def test_compare_sets_the_first_side_against_the_second():
    def health(blocked, answered, fp, negatives):
        block = rate(blocked, answered)
        return {
            "outcomes": {"false_positive_rate": rate(fp, negatives), "true_positive_rate": rate(0, 0)},
            "decision_mix": {"block": block},
        }

    figures = compare(
        health(30, 200, 30, 200),
        health(10, 1000, 10, 1000),
        samples_a={"scores": [0.9] * 30 + [0.1] * 170, "latency_ms": [2.0] * 200},
        samples_b={"scores": [0.9] * 10 + [0.1] * 990, "latency_ms": [2.0] * 1000},
        detectable=0.02,
    )
    assert figures["false_positive_rate"]["difference"] == pytest.approx(0.14)
    assert figures["false_positive_rate"]["unit"] == "negative outcomes"
    assert figures["true_positive_rate"]["p_value"] is None and figures["true_positive_rate"]["more_needed"] is None
    assert figures["score"]["superiority"] > 0.5 and figures["latency"]["p95_ratio"]["ratio"] == pytest.approx(1.0)
