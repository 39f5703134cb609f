"""Model health: the one definition of how a model did over a window, shared by everything that judges it.

The rollout guard, the comparison page, ``GET /v1/audit/compare``, the rollout page and backtests
read these figures and nothing else, so that for the same side and window they report the same
numbers. A *side* is a product's traffic in one role (production, canary or shadow), optionally
one model version of it:

- **requests**: what was routed to the side. For production and shadow, the rows the side's
  model answered; for the canary also the attempts that failed over to production (rows whose
  ``fallback_from`` is the canary): **failovers**, and ``error_rate`` = failovers / requests.
  Production failures answer 5xx and leave no row, so production has no error rate here (the
  HTTP metrics have it).
- **latency**: percentiles of the answered rows, interpolated linearly between neighbours
  (PostgreSQL's ``percentile_cont``, the same formula in Python elsewhere); ``slower_than`` counts
  answers above a bound, which is how the guard tests a p95.
- **decisions**, **score** (mean and histogram over ten equal bins of [0, 1]) and the cache hit
  rate, over the answered rows.
- **outcomes**: each answered row is judged by *one* outcome, `outcome_label`: the latest (by
  ``observed_at``, then arrival) of its product's outcomes for its event that name this
  prediction, the answer it shadowed, or no prediction. False-positive rate = blocked negatives
  over negatives; true-positive rate = blocked positives over positives.
- **shadow**: the side's model running as a shadow (rows of role ``shadow`` of its versions):
  runs, agreement of decisions with the answer, and the diff classes (`audit.diffs`).

Rates come as `audit.evidence.proportions.rate` (count, total, value and Wilson interval).
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Avg, Count, OuterRef, Q, QuerySet, Subquery

from audit.evidence.proportions import rate
from audit.models import DiffClass, Outcome, PredictionLog
from audit.selectors.log import latency_percentiles, score_histogram
from mlops.choices import Decision, ModelRole

# The raw values a two-sample test or an interval of a quantile is computed over: the newest this
# many answers of a side (enough for intervals of a few percent; bounded so a long window stays cheap).
SAMPLE_LIMIT = 20_000


@dataclass(frozen=True)
class Side:
    product: str
    role: str
    model_version_id: object = None  # None: every version that played the role


def outcome_label() -> Subquery:
    """The label of the one outcome that judges a log row (see the module's docstring), or NULL."""
    outcomes = Outcome.objects.filter(product=OuterRef("product"), event_id=OuterRef("event_id")).filter(
        Q(prediction_id=OuterRef("prediction_id")) | Q(prediction_id=OuterRef("primary_prediction_id")) | Q(prediction_id__isnull=True)
    )
    return Subquery(outcomes.order_by("-observed_at", "-pk").values("label")[:1])


def window_rows(product: str, since: datetime, until: datetime, segment: Q | None = None) -> QuerySet:
    """The product's rows over ``[since, until)``; ``segment``, a condition on a row (its features or
    score, see `audit.selectors.comparison`), narrows every figure to the rows it holds for."""
    rows = PredictionLog.objects.filter(product=product, created_at__gte=since, created_at__lt=until)
    return rows if segment is None else rows.filter(segment)


def answered_rows(side: Side, *, since: datetime, until: datetime, segment: Q | None = None) -> QuerySet:
    """The rows the side answered (or, for a shadow, ran) over ``[since, until)``, in ``segment`` if given."""
    rows = window_rows(side.product, since, until, segment).filter(role=side.role, fallback_from__isnull=True)
    return rows if side.model_version_id is None else rows.filter(model_version_id=side.model_version_id)


def failover_rows(side: Side, *, since: datetime, until: datetime, segment: Q | None = None) -> QuerySet | None:
    """The canary's attempts that failed over to production; None for a side that cannot fail over."""
    if side.role != ModelRole.CANARY:
        return None
    rows = window_rows(side.product, since, until, segment)
    if side.model_version_id is None:
        return rows.filter(fallback_from__isnull=False)
    return rows.filter(fallback_from_id=side.model_version_id)


def outcome_counts(rows: QuerySet) -> dict:
    """Confusion counts of ``rows`` against their outcome, and the two rates."""
    # One GROUP BY (label, blocked): the outcome subquery runs once per row, not once per count.
    cells = (
        rows.order_by()
        .annotate(outcome_label=outcome_label(), blocked=Q(decision=Decision.BLOCK))
        .filter(outcome_label__isnull=False)
        .values_list("outcome_label", "blocked")
        .annotate(n=Count("pk"))
    )
    confusion = {(label, blocked): n for label, blocked, n in cells}
    counts = {
        "labelled": sum(confusion.values()),
        "negatives": confusion.get((False, False), 0) + confusion.get((False, True), 0),
        "positives": confusion.get((True, False), 0) + confusion.get((True, True), 0),
        "false_positives": confusion.get((False, True), 0),
        "true_positives": confusion.get((True, True), 0),
    }
    counts["false_positive_rate"] = rate(counts["false_positives"], counts["negatives"])
    counts["true_positive_rate"] = rate(counts["true_positives"], counts["positives"])
    return counts


def shadow_counts(shadow_rows: QuerySet) -> dict:
    counts = shadow_rows.order_by().aggregate(
        runs=Count("pk"),
        compared=Count("pk", filter=Q(decision_agrees__isnull=False)),
        agreed=Count("pk", filter=Q(decision_agrees=True)),
        classified=Count("pk", filter=~Q(diff_class="")),
        mean_score_diff=Avg("score_diff"),
        **{cls.value: Count("pk", filter=Q(diff_class=cls.value)) for cls in DiffClass},
    )
    return {
        "runs": counts["runs"],
        "agreement_rate": rate(counts["agreed"], counts["compared"]),
        "significant_rate": rate(counts[DiffClass.SIGNIFICANT], counts["classified"]),
        "diff_classes": {cls.value: counts[cls.value] for cls in DiffClass},
        "mean_score_diff": counts["mean_score_diff"],
    }


def model_health(side: Side, *, since: datetime, until: datetime, segment: Q | None = None) -> dict:
    """The side's health over ``[since, until)`` (the module's docstring defines every figure), in ``segment`` if given."""
    answered = answered_rows(side, since=since, until=until, segment=segment)
    totals = answered.order_by().aggregate(
        answered=Count("pk"),
        cached=Count("pk", filter=Q(cached=True)),
        mean_score=Avg("score"),
        **{decision.value: Count("pk", filter=Q(decision=decision.value)) for decision in Decision},
    )
    failovers = failover_rows(side, since=since, until=until, segment=segment)
    failed = None if failovers is None else failovers.count()
    requests = totals["answered"] + (failed or 0)
    versions = list(
        answered.order_by("model_version__name", "model_version__version")
        .values_list("model_version_id", "model_version__name", "model_version__version")
        .distinct()
    )
    version_ids = [side.model_version_id] if side.model_version_id is not None else [pk for pk, _, _ in versions]
    own_shadow_runs = window_rows(side.product, since, until, segment).filter(role=ModelRole.SHADOW, model_version_id__in=version_ids)
    return {
        "role": side.role,
        "model_versions": [{"id": str(pk), "model": f"{name}@{version}"} for pk, name, version in versions],
        "requests": requests,
        "answered": totals["answered"],
        "failovers": failed,
        "error_rate": None if failed is None else rate(failed, requests),
        "latency_ms": latency_percentiles(answered),
        "cache_hit_rate": rate(totals["cached"], totals["answered"]),
        "decision_mix": {decision.value: rate(totals[decision.value], totals["answered"]) for decision in Decision},
        "score": {"mean": totals["mean_score"], "histogram": score_histogram(answered)},
        "outcomes": outcome_counts(answered),
        "shadow": shadow_counts(own_shadow_runs),
    }


def slower_than(side: Side, *, since: datetime, until: datetime, ms: float) -> int:
    """How many of the side's answers took longer than ``ms``."""
    return answered_rows(side, since=since, until=until).filter(latency_ms__gt=ms).count()


def samples(side: Side, *, since: datetime, until: datetime, limit: int = SAMPLE_LIMIT, segment: Q | None = None) -> dict[str, list[float]]:
    """The newest ``limit`` answers' scores and latencies, for two-sample tests and quantile intervals."""
    rows = answered_rows(side, since=since, until=until, segment=segment).order_by("-created_at").values_list("score", "latency_ms")[:limit]
    scores, latencies = [], []
    for score, latency in rows:
        scores.append(score)
        latencies.append(latency)
    return {"scores": scores, "latency_ms": latencies}
