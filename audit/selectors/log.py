"""Audit reads of the prediction log itself: windows and durations, latency percentiles and score
histograms (the building blocks of `audit.selectors.health`), recent rows, a prediction's shadow
comparison, and what the rollout guard judges and the rollout page shows (`canary_measure`,
`role_stats`).

Percentiles interpolate linearly between neighbours (PostgreSQL's ``percentile_cont``; the same
formula in Python on other databases). Health, the comparison and the summary are defined in
`audit.selectors.health`, `.comparison` and `.summary`.
"""

import math
import re
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Aggregate, Count, Exists, FloatField, IntegerField, OuterRef, Q, QuerySet
from django.db.models.functions import Cast, Floor, Greatest, Least, TruncMinute
from django.utils import timezone

from audit.models import DiffClass, Outcome, PredictionLog
from mlops.choices import Decision, ModelRole

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


# --- Rollout: what the guard judges and the rollout page shows --------------------------------


def latency_nearest_rank(queryset: QuerySet, fraction: float, *, count: int | None = None) -> float | None:
    """The nearest-rank percentile of ``latency_ms`` in ``queryset`` (one ordered query, any database).

    The rollout guard and the rollout page use it: a latency the log really recorded, not an
    interpolation (the comparison's percentiles above interpolate).
    """
    count = queryset.count() if count is None else count
    if not count:
        return None
    rank = max(1, math.ceil(fraction * count))
    return queryset.order_by("latency_ms").values_list("latency_ms", flat=True)[rank - 1]


def canary_measure(*, product: str, canary_model_id, start: datetime, end: datetime) -> dict:
    """What the log says about one canary between ``start`` and ``end``."""
    rows = PredictionLog.objects.filter(product=product, created_at__gte=start, created_at__lt=end)
    answered = rows.filter(role=ModelRole.CANARY, model_version_id=canary_model_id, fallback_from__isnull=True)
    failed = rows.filter(fallback_from_id=canary_model_id)
    production = rows.filter(role=ModelRole.PRODUCTION, fallback_from__isnull=True)
    answered_count, failed_count, production_count = answered.count(), failed.count(), production.count()
    attempts = answered_count + failed_count

    negative = Outcome.objects.filter(product=OuterRef("product"), label=False).filter(
        Q(prediction_id=OuterRef("prediction_id")) | Q(prediction_id__isnull=True, event_id=OuterRef("event_id"))
    )
    judged = answered.filter(Exists(negative)).aggregate(negatives=Count("pk"), blocked=Count("pk", filter=Q(decision=Decision.BLOCK)))

    shadows = rows.filter(role=ModelRole.SHADOW, model_version_id=canary_model_id).exclude(diff_class="")
    shadow = shadows.aggregate(total=Count("pk"), significant=Count("pk", filter=Q(diff_class=DiffClass.SIGNIFICANT)))

    return {
        "canary_attempts": attempts,
        "canary_answered": answered_count,
        "canary_errors": failed_count,
        "error_rate": failed_count / attempts if attempts else None,
        "canary_p95_ms": latency_nearest_rank(answered, 0.95, count=answered_count),
        "production_requests": production_count,
        "production_p95_ms": latency_nearest_rank(production, 0.95, count=production_count),
        "outcome_negatives": judged["negatives"],
        "false_positives": judged["blocked"],
        "fp_rate": judged["blocked"] / judged["negatives"] if judged["negatives"] else None,
        "shadow_runs": shadow["total"],
        "shadow_significant": shadow["significant"],
        "significant_diff_rate": shadow["significant"] / shadow["total"] if shadow["total"] else None,
    }


def role_stats(*, product: str, minutes: int, now: datetime | None = None) -> dict:
    """Requests, errors and p95 per role over the last ``minutes``, and per-minute request counts for a chart."""
    now = now or timezone.now()
    start = now - timedelta(minutes=minutes)
    rows = PredictionLog.objects.filter(product=product, created_at__gte=start, created_at__lt=now)
    roles = {}
    for role in ModelRole.values:
        answered = rows.filter(role=role, fallback_from__isnull=True)
        count = answered.count()
        errors = rows.filter(fallback_from__isnull=False).count() if role == ModelRole.CANARY else None
        roles[role] = {"requests": count + (errors or 0), "errors": errors, "p95_ms": latency_nearest_rank(answered, 0.95, count=count)}
    shadow = (
        rows.filter(role=ModelRole.SHADOW)
        .exclude(diff_class="")
        .aggregate(total=Count("pk"), significant=Count("pk", filter=Q(diff_class=DiffClass.SIGNIFICANT)))
    )
    roles[ModelRole.SHADOW]["significant_diffs"] = shadow["significant"]
    per_minute = (
        rows.annotate(minute=TruncMinute("created_at"))
        .values("minute", "role")
        .annotate(n=Count("pk"), errors=Count("pk", filter=Q(fallback_from__isnull=False)))
        .order_by("minute")
    )
    first_minute = start.replace(second=0, microsecond=0)
    labels = [first_minute + timedelta(minutes=i) for i in range(minutes + 1)]
    series = {role: [0] * len(labels) for role in [*ModelRole.values, "errors"]}
    for row in per_minute:
        index = int((row["minute"] - first_minute).total_seconds() // 60)
        if 0 <= index < len(labels):
            series[row["role"]][index] += row["n"]
            series["errors"][index] += row["errors"]
    return {
        "product": product,
        "minutes": minutes,
        "generated_at": now.isoformat(),
        "roles": roles,
        "chart": {"labels": [label.strftime("%H:%M") for label in labels], "series": series},
    }
