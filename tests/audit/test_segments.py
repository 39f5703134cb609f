"""Segment bins (`audit.selectors.segments`): a row's bin read in Python (the backtest's `Bins.indexes`)
is the bin the comparison's database condition puts it in, at the edges, outside them and for
values that are no number."""

import pytest
from django.db.models import FloatField
from django.db.models.functions import Cast

from audit.models import PredictionLog
from audit.selectors.segments import FEATURE, feature_value, number, quantile_bounds, score_bands, segment_bins
from tests.audit.conftest import make_record, make_version
from tests.logged import log_rows

pytestmark = pytest.mark.django_db

VALUES = [1, 2.0, 2.5, 3, 3, 4.0, 7.5, True, "3", None]  # None: the key is absent
SCORES = [0.0, 0.2, 0.49, 0.5, 0.8, 1.0]


@pytest.fixture
def rows():
    version = make_version()
    for index, value in enumerate(VALUES):
        features = {} if value is None else {"x": value}
        log_rows([PredictionLog(**make_record(version, features=features, score=SCORES[index % len(SCORES)]))])
    return PredictionLog.objects.order_by("-created_at")


def in_sql(rows, bins, value) -> list[set]:
    """The bins of the rows by their value as the database reads it (the comparison's sample, `feature_value`)."""
    found = [set() for _ in bins.bounds]
    read = list(rows.annotate(read=value).values_list("pk", "read"))
    for (pk, _), index in zip(read, bins.indexes(value for _, value in read), strict=True):
        if index >= 0:
            found[index].add(pk)
    return found


def in_python(rows, bins, value_of) -> list[set]:
    found = [set() for _ in bins.bounds]
    for row in rows:
        [index] = bins.indexes([value_of(row)])
        if index >= 0:
            found[index].add(row.pk)
    return found


def test_a_feature_row_is_in_the_same_bin_in_python_as_in_the_database(rows):
    numbers = [v for v in VALUES if number(v) is not None]
    bins = segment_bins({FEATURE: "x", "bins": 3}, rows.exclude(features__x__in=[True, "3"]))
    assert bins.available and bins.bounds[0][0] is None and bins.bounds[-1][1] is None
    assert in_python(rows, bins, lambda row: number(row.features.get("x"))) == in_sql(rows, bins, feature_value("x"))
    assert sum(map(len, in_python(rows, bins, lambda row: number(row.features.get("x"))))) == len(numbers)


def test_a_score_row_is_in_the_same_band_in_python_as_in_the_database_and_the_last_band_holds_1(rows):
    bins = score_bands({"score_band": [0.2, 0.5, 1]})
    assert bins.labels() == ["0.2 ≤ score < 0.5", "0.5 ≤ score ≤ 1"]
    python = in_python(rows, bins, lambda row: row.score)
    assert python == in_sql(rows, bins, Cast("score", FloatField()))
    assert bins.indexes([1.0, 0.0, 0.5, None]).tolist() == [1, -1, 1, -1]


@pytest.mark.parametrize(
    ("logged", "reason"),
    [
        ([], "no production answers in the window"),
        ([(None, None)], "not logged on production's answers in the window"),
        ([("1", 1.0), ("a", None)], "its logged values are not all numbers"),
        ([("1", 1.0), ("1", 1.0)], "production logged a single value in the window"),
    ],
)
def test_a_feature_without_numbers_to_bin_says_why(logged, reason):
    assert quantile_bounds(logged, 4) == ([], reason)
