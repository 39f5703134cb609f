"""Audit reads of the prediction log itself: windows and durations, recent rows and a prediction's
shadow comparison. Health, the comparison and the summary are defined in `audit.selectors.health`,
`.comparison` and `.summary`, on the rollups (`audit.rollups`).
"""

import re
from datetime import datetime, timedelta

from django.db.models import QuerySet

from audit.models import PredictionLog
from audit.selectors.pages import ID_TIME_MARGIN, by_prediction_id
from mlops.choices import ModelRole

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


def rows_in_window(*, product: str | None, since: datetime, until: datetime | None = None) -> QuerySet:
    rows = PredictionLog.objects.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    if product:
        rows = rows.filter(product=product)
    return rows


def prediction_log_recent(*, product: str | None = None) -> QuerySet:
    rows = PredictionLog.objects.select_related("model_version").order_by("-created_at", "-prediction_id")
    return rows.filter(product=product) if product else rows


def shadow_comparison_rows(prediction: PredictionLog) -> QuerySet:
    """For an answering row, its shadow runs; for a shadow row, the answer it was compared with."""
    rows = PredictionLog.objects.select_related("model_version")
    if prediction.role == ModelRole.SHADOW:
        return by_prediction_id(rows, prediction.primary_prediction_id)
    # A shadow runs within moments of its answer: bounding the time keeps the read to its day's partition.
    made = prediction.created_at
    return rows.filter(primary_prediction_id=prediction.pk, created_at__gte=made - ID_TIME_MARGIN, created_at__lte=made + ID_TIME_MARGIN)


def known_products() -> list[str]:
    from mlops.models import ModelVersion

    return sorted(set(ModelVersion.objects.values_list("product", flat=True)))
