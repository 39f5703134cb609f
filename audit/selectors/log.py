"""Audit reads of the prediction log itself: windows and durations, latency percentiles and score
histograms (the building blocks of `audit.selectors.health`), recent rows and a prediction's shadow
comparison.

Percentiles interpolate linearly between neighbours (PostgreSQL's ``percentile_cont``; the same
formula in Python on other databases). Health, the comparison and the summary are defined in
`audit.selectors.health`, `.comparison` and `.summary`.
"""

import math
import re
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Aggregate, Count, FloatField, IntegerField, QuerySet
from django.db.models.functions import Cast, Floor, Greatest, Least

from audit.models import PredictionLog
from mlops.choices import ModelRole

HISTOGRAM_BINS = 10
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_WINDOW = timedelta(days=366)


def parse_duration(text: str) -> timedelta:
    """``"30m"``, ``"24h"``, ``"7d"`` → timedelta; ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError("use a number followed by s, m, h or d, e.g. 24h")
    value = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if value <= timedelta(0) or value > MAX_WINDOW:
        raise ValueError("must be more than 0 and at most 366 days")
    return value


class PercentileCont(Aggregate):
    """PostgreSQL ``percentile_cont(p) WITHIN GROUP (ORDER BY expr)``."""

    function = "percentile_cont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, percentile: float, **extra):
        super().__init__(expression, percentile=repr(float(percentile)), **extra)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """``percentile_cont`` in Python: linear interpolation between the closest ranks."""
    if not sorted_values:
        return None
    position = p * (len(sorted_values) - 1)
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def latency_percentiles(rows: QuerySet, points=(0.5, 0.95, 0.99)) -> dict[str, float | None]:
    names = {f"p{round(p * 100)}": p for p in points}
    if connection.vendor == "postgresql":
        return rows.aggregate(**{name: PercentileCont("latency_ms", p) for name, p in names.items()})
    values = sorted(rows.values_list("latency_ms", flat=True))
    return {name: percentile(values, p) for name, p in names.items()}


def rows_in_window(*, product: str | None, since: datetime, until: datetime | None = None) -> QuerySet:
    rows = PredictionLog.objects.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    if product:
        rows = rows.filter(product=product)
    return rows


def score_histogram(rows: QuerySet, bins: int = HISTOGRAM_BINS) -> list[int]:
    """Counts of scores in ``bins`` equal bins over [0, 1] (1.0 falls in the last bin)."""
    bucket = Cast(Least(Greatest(Floor(Cast("score", FloatField()) * bins), 0), bins - 1), IntegerField())
    counts = dict(rows.order_by().annotate(bucket=bucket).values_list("bucket").annotate(n=Count("pk")).values_list("bucket", "n"))
    return [counts.get(index, 0) for index in range(bins)]


def prediction_log_recent(*, product: str | None = None) -> QuerySet:
    rows = PredictionLog.objects.select_related("model_version").order_by("-created_at", "-prediction_id")
    return rows.filter(product=product) if product else rows


def shadow_comparison_rows(prediction: PredictionLog) -> QuerySet:
    """For an answering row, its shadow runs; for a shadow row, the answer it was compared with."""
    if prediction.role == ModelRole.SHADOW:
        return PredictionLog.objects.filter(pk=prediction.primary_prediction_id).select_related("model_version")
    return PredictionLog.objects.filter(primary_prediction_id=prediction.pk).select_related("model_version")


def known_products() -> list[str]:
    from mlops.models import ModelVersion

    return sorted(set(ModelVersion.objects.values_list("product", flat=True)))
