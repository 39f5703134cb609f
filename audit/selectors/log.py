"""Audit reads: the prediction log summary, the canary-vs-production comparison and recent rows
(what the rollout guard tests and the rollout page shows is in `audit.selectors.rollout`).

Definitions used throughout (the API, the admin comparison page and the tests share them):

- *answering rows*: role ``production`` or ``canary`` (what clients got); shadow rows are
  counted apart. Latency percentiles and the cache hit rate are over answering rows.
- Percentiles interpolate linearly between neighbours (PostgreSQL's ``percentile_cont``; the
  same formula in Python on other databases).
- *false-positive rate*: among answering rows whose event has an outcome with ``label=False``
  (the latest outcome of the event counts), the share whose decision was ``block``:
  FP / (FP + TN). ``None`` when no negative outcome is known.
- *agreement rate*: among shadow runs, the share whose decision matched the answer's.
- *error rate* (compare): canary attempts that failed over to production (rows with
  ``fallback_from`` set) over all canary attempts (canary rows + those fallbacks). Production
  failures answer 5xx and leave no row, so the log can not give a production error rate
  (``None``; see the HTTP metrics).
"""

import math
import re
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Aggregate, Avg, Count, FloatField, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Cast, Floor, Greatest, Least
from django.utils import timezone

from audit.models import DiffClass, Outcome, PredictionLog
from mlops.choices import Decision, ModelRole

ANSWERING_ROLES = (ModelRole.PRODUCTION, ModelRole.CANARY)
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


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def rows_in_window(*, product: str | None, since: datetime, until: datetime | None = None) -> QuerySet:
    rows = PredictionLog.objects.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    if product:
        rows = rows.filter(product=product)
    return rows


def outcome_stats(rows: QuerySet) -> dict:
    """Confusion counts of ``rows`` against the latest outcome of each row's event."""
    latest_label = (
        Outcome.objects.filter(product=OuterRef("product"), event_id=OuterRef("event_id"))
        .order_by("-observed_at", "-pk")
        .values("label")[:1]
    )
    counts = (
        rows.order_by()
        .annotate(outcome_label=Subquery(latest_label))
        .aggregate(
            labelled=Count("pk", filter=Q(outcome_label__isnull=False)),
            negatives=Count("pk", filter=Q(outcome_label=False)),
            positives=Count("pk", filter=Q(outcome_label=True)),
            false_positives=Count("pk", filter=Q(outcome_label=False, decision=Decision.BLOCK)),
            true_positives=Count("pk", filter=Q(outcome_label=True, decision=Decision.BLOCK)),
        )
    )
    counts["false_positive_rate"] = _rate(counts["false_positives"], counts["negatives"])
    counts["recall"] = _rate(counts["true_positives"], counts["positives"])
    return counts


def shadow_stats(shadow_rows: QuerySet) -> dict:
    counts = shadow_rows.order_by().aggregate(
        runs=Count("pk"),
        compared=Count("pk", filter=Q(decision_agrees__isnull=False)),
        agreed=Count("pk", filter=Q(decision_agrees=True)),
        mean_score_diff=Avg("score_diff"),
        **{cls.value: Count("pk", filter=Q(diff_class=cls.value)) for cls in DiffClass},
    )
    return {
        "runs": counts["runs"],
        "diff_classes": {cls.value: counts[cls.value] for cls in DiffClass},
        "mean_score_diff": counts["mean_score_diff"],
        "agreement_rate": _rate(counts["agreed"], counts["compared"]),
    }


def prediction_log_summary(*, product: str | None, since: datetime, until: datetime | None = None) -> dict:
    """Counts, latency, cache, shadow and outcome figures of the log over ``[since, until)``."""
    rows = rows_in_window(product=product, since=since, until=until)
    answering = rows.filter(role__in=ANSWERING_ROLES)
    counts = list(
        rows.order_by("model_version__name", "model_version__version", "role", "decision")
        .values("model_version_id", "model_version__name", "model_version__version", "role", "decision")
        .annotate(count=Count("pk"))
    )
    totals = answering.order_by().aggregate(answers=Count("pk"), cached=Count("pk", filter=Q(cached=True)))
    return {
        "product": product,
        "since": since,
        "until": until,
        "total_rows": sum(item["count"] for item in counts),
        "answers": totals["answers"],
        "counts": [
            {
                "model_version": str(item["model_version_id"]),
                "model": f"{item['model_version__name']}@{item['model_version__version']}",
                "role": item["role"],
                "decision": item["decision"],
                "count": item["count"],
            }
            for item in counts
        ],
        "latency_ms": latency_percentiles(answering),
        "cache_hit_rate": _rate(totals["cached"], totals["answers"]),
        "shadow": shadow_stats(rows.filter(role=ModelRole.SHADOW)),
        "outcomes": outcome_stats(answering),
    }


def score_histogram(rows: QuerySet, bins: int = HISTOGRAM_BINS) -> list[int]:
    """Counts of scores in ``bins`` equal bins over [0, 1] (1.0 falls in the last bin)."""
    bucket = Cast(Least(Greatest(Floor(Cast("score", FloatField()) * bins), 0), bins - 1), IntegerField())
    counts = dict(rows.order_by().annotate(bucket=bucket).values_list("bucket").annotate(n=Count("pk")).values_list("bucket", "n"))
    return [counts.get(index, 0) for index in range(bins)]


def _side(rows: QuerySet, shadows_of: QuerySet, *, fallbacks: int | None) -> dict:
    decisions = dict(rows.order_by().values_list("decision").annotate(n=Count("pk")).values_list("decision", "n"))
    count = sum(decisions.values())
    versions = (
        rows.order_by("model_version__name", "model_version__version")
        .values_list("model_version_id", "model_version__name", "model_version__version")
        .distinct()
    )
    side = {
        "model_versions": [{"id": str(pk), "model": f"{name}@{version}"} for pk, name, version in versions],
        "requests": count,
        "latency_ms": latency_percentiles(rows, points=(0.5, 0.95)),
        "decision_mix": {d.value: {"count": decisions.get(d.value, 0), "share": _rate(decisions.get(d.value, 0), count)} for d in Decision},
        "mean_score": rows.aggregate(mean=Avg("score"))["mean"],
        "score_histogram": score_histogram(rows),
        "agreement_rate": shadow_stats(shadows_of)["agreement_rate"],
        "outcomes": outcome_stats(rows),
    }
    if fallbacks is None:
        side.update(fallbacks=None, error_rate=None)
    else:
        side.update(fallbacks=fallbacks, error_rate=_rate(fallbacks, count + fallbacks))
    return side


def canary_comparison(*, product: str, window: timedelta, now: datetime | None = None) -> dict:
    """Canary against production over the last ``window``: the figures of the compare page and API."""
    until = now or timezone.now()
    since = until - window
    rows = rows_in_window(product=product, since=since, until=until)
    shadows = rows.filter(role=ModelRole.SHADOW)
    production = rows.filter(role=ModelRole.PRODUCTION)
    canary = rows.filter(role=ModelRole.CANARY)
    fallbacks = production.filter(fallback_from__isnull=False).count()
    return {
        "product": product,
        "window_seconds": int(window.total_seconds()),
        "since": since,
        "until": until,
        "histogram_edges": [round(i / HISTOGRAM_BINS, 4) for i in range(HISTOGRAM_BINS + 1)],
        "production": _side(production, shadows.filter(primary_prediction_id__in=production.values("pk")), fallbacks=None),
        "canary": _side(canary, shadows.filter(primary_prediction_id__in=canary.values("pk")), fallbacks=fallbacks),
    }


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
