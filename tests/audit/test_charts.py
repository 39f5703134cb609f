"""audit.charts: the intervals the comparison page draws (no database)."""

import re

import pytest

from audit.charts import interval_svg, nice_ceiling, rates_svg, symmetric_reach


@pytest.mark.parametrize(("value", "end"), [(0.043, 0.05), (0.2, 0.2), (0.21, 0.25), (0.9, 1.0), (3.2, 5.0), (0, 1.0)])
def test_axes_end_at_a_round_number_above_the_data(value, end):
    assert nice_ceiling(value) == pytest.approx(end)


def test_a_whisker_sits_where_its_numbers_say_on_the_axis():
    svg = interval_svg([("canary", 0.5, 0.25, 0.75)], domain=(0.0, 1.0), width=116)  # 8 px margins: 100 px of axis
    assert re.search(r'<line class="whisker" x1="33.0" x2="83.0"', svg)
    assert '<circle cx="58.0"' in svg
    assert 'data-value="0.5" data-low="0.25" data-high="0.75"' in svg


def test_an_open_bound_runs_to_the_axis_end_without_a_cap_and_no_value_draws_nothing():
    svg = interval_svg([("ratio", 1.2, 0.9, None), ("missing", None, None, None)], domain=(0.0, 2.0), reference=1.0, percent=False)
    assert svg.count('class="interval ') == 1
    assert svg.count('class="cap open"') == 1 and 'data-high=""' in svg
    assert '<line class="reference"' in svg


def test_labels_are_escaped_and_both_sides_share_one_axis():
    svg = rates_svg({"value": 0.01, "low": 0.005, "high": 0.02}, {"value": 0.1, "low": 0.05, "high": 0.19}, label="<b>FP</b>")
    assert "&lt;b&gt;FP&lt;/b&gt;" in svg and "<b>" not in svg
    assert ">20%</text>" in svg  # the axis ends above the higher interval
    assert symmetric_reach([{"low": -0.03, "high": 0.01}, {"low": None, "high": 0.07}]) == pytest.approx(0.1)
