"""PSI and the bins, on histograms worked out by hand."""

import math

import numpy as np
import pytest

from audit.drift.psi import EPSILON, bin_counts, level, psi, quantile_edges


def test_identical_histograms_have_psi_0():
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)


def test_psi_of_a_known_pair_of_histograms():
    # shares 0.25 each against 0.4, 0.3, 0.2, 0.1: sum of (l - b) ln(l / b)
    expected = sum((live - 0.25) * math.log(live / 0.25) for live in (0.4, 0.3, 0.2, 0.1))
    assert psi([25, 25, 25, 25], [40, 30, 20, 10]) == pytest.approx(expected)
    assert expected == pytest.approx(0.2282, abs=1e-4)


def test_an_empty_bin_counts_as_epsilon_instead_of_dividing_by_zero():
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert psi([10, 0], [5, 5]) == pytest.approx(expected)


def test_no_psi_without_rows_on_either_side():
    assert psi([0, 0], [1, 2]) is None and psi([1, 2], [0, 0]) is None


def test_bins_of_different_lengths_are_refused():
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])


def test_quantile_edges_merge_repeats_and_ignore_non_finite_values():
    assert quantile_edges(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 4) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert quantile_edges(np.array([1.0, 1.0, 1.0, np.nan]), 10) == [1.0]  # a constant: one edge
    assert quantile_edges(np.array([np.nan]), 10) == []


def test_bin_counts_have_an_overflow_bin_on_each_side_and_close_the_last_inner_bin():
    edges = [0.0, 1.0, 2.0]
    # below 0 | [0, 1) | [1, 2] | above 2 ; NaN is not counted
    assert bin_counts(np.array([-5.0, 0.0, 0.5, 1.0, 2.0, 2.5, np.nan]), edges) == [1, 2, 2, 1]


def test_a_reference_never_falls_in_the_overflow_bins():
    values = np.random.default_rng(3).normal(size=1000)
    counts = bin_counts(values, quantile_edges(values, 10))
    assert len(counts) == 12 and counts[0] == counts[-1] == 0 and sum(counts) == 1000


def test_levels_follow_the_thresholds():
    thresholds = {"moderate": 0.1, "significant": 0.25}
    assert [level(v, **thresholds) for v in (0.05, 0.1, 0.2, 0.25, 3.0, None)] == [
        "stable", "moderate", "moderate", "significant", "significant", None,
    ]  # fmt: skip
