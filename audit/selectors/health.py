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
- **latency**: percentiles of the answered rows, read from their latency histogram
  (`audit.rollups.histograms`: buckets 9% wide, linear inside a bucket); ``slower_than`` counts
  answers above a bound the same way, which is how the guard tests a p95.
- **decisions**, **score** (mean and histogram over ten equal bins of [0, 1]) and the cache hit
  rate, over the answered rows.
- **outcomes**: each answered row is judged by *one* outcome, `outcome_label`: the latest (by
  ``observed_at``, then arrival) of its product's outcomes for its event that name this
  prediction, the answer it shadowed, or no prediction. False-positive rate = blocked negatives
  over negatives; true-positive rate = blocked positives over positives.
- **shadow**: the side's model running as a shadow (rows of role ``shadow`` of its versions):
  runs, agreement of decisions with the answer, and the diff classes (`audit.diffs`).

Rates come as `audit.evidence.proportions.rate` (count, total, value and Wilson interval).

Every figure is a function of the window's `audit.rollups.figures.Figures` per key (`health_of`),
read from the rollups (`audit.rollups.selectors.window_figures`: its cost the window's minutes, not
its rows) or, for a segment of the comparison, summed from a sample of raw rows (the same sums).
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from audit.evidence.proportions import rate
from audit.models import PredictionLog
from audit.rollups.figures import DECISIONS, DIFF_CLASSES, Figures, Key, total
from audit.rollups.histograms import count_above, percentiles
from audit.rollups.selectors import window_figures
from mlops.choices import ModelRole
from mlops.models import ModelVersion

# The raw values a two-sample test or an interval of a quantile is computed over: the newest this
# many answers of a side (enough for intervals of a few percent; bounded so a long window stays cheap).
SAMPLE_LIMIT = 20_000


@dataclass(frozen=True)
class Side:
    product: str
    role: str
    model_version_id: object = None  # None: every version that played the role

    def answers(self, key: Key) -> bool:
        """Whether ``key``'s rows are the side's answers (or, for a shadow, its runs)."""
        version = self.model_version_id
        return key.role == self.role and key.fallback_from_id is None and (version is None or key.model_version_id == str(version))

    def failed_over(self, key: Key) -> bool:
        """Whether ``key``'s rows are the side's attempts that failed over (a canary's only)."""
        if self.role != ModelRole.CANARY or key.fallback_from_id is None:
            return False
        return self.model_version_id is None or key.fallback_from_id == str(self.model_version_id)


def window_rows(product: str, since: datetime, until: datetime) -> QuerySet:
    """The product's rows over ``[since, until)``."""
    return PredictionLog.objects.filter(product=product, created_at__gte=since, created_at__lt=until)


def answered_rows(side: Side, *, since: datetime, until: datetime) -> QuerySet:
    """The rows the side answered (or, for a shadow, ran) over ``[since, until)``."""
    rows = window_rows(side.product, since, until).filter(role=side.role, fallback_from__isnull=True)
    return rows if side.model_version_id is None else rows.filter(model_version_id=side.model_version_id)


def outcome_counts(figures: Figures) -> dict:
    """Confusion counts of the rows an outcome judges, and the two rates."""
    counts = {
        "negatives": int(figures.get("negative_pass") + figures.get("negative_block")),
        "positives": int(figures.get("positive_pass") + figures.get("positive_block")),
        "false_positives": int(figures.get("negative_block")),
        "true_positives": int(figures.get("positive_block")),
    }
    counts = {"labelled": counts["negatives"] + counts["positives"], **counts}
    counts["false_positive_rate"] = rate(counts["false_positives"], counts["negatives"])
    counts["true_positive_rate"] = rate(counts["true_positives"], counts["positives"])
    return counts


def shadow_counts(figures: Figures) -> dict:
    diffs = int(figures.get("score_diff_n"))
    return {
        "runs": int(figures.get("rows")),
        "agreement_rate": rate(int(figures.get("agreed")), int(figures.get("compared"))),
        "significant_rate": rate(int(figures.get("significant")), int(figures.get("classified"))),
        "diff_classes": {name: int(figures.get(name)) for name in DIFF_CLASSES},
        "mean_score_diff": figures.get("score_diff_sum") / diffs if diffs else None,
    }


def version_names(version_ids) -> list[dict]:
    """``[{id, model}]`` of the versions, by model name and version."""
    versions = ModelVersion.objects.filter(pk__in=list(version_ids)).order_by("name", "version").values_list("pk", "name", "version")
    return [{"id": str(pk), "model": f"{name}@{version}"} for pk, name, version in versions]


def answered_figures(side: Side, figures: dict[Key, Figures]) -> Figures:
    """The side's answers (or shadow runs) of a window's figures per key, summed."""
    return total(value for key, value in figures.items() if side.answers(key))


def health_of(side: Side, figures: dict[Key, Figures]) -> dict:
    """The side's health from a window's figures per key (the module's docstring defines every figure)."""
    answered = answered_figures(side, figures)
    failed = None if side.role != ModelRole.CANARY else int(total(v for k, v in figures.items() if side.failed_over(k)).get("rows"))
    rows = int(answered.get("rows"))
    requests = rows + (failed or 0)
    answering_versions = {key.model_version_id for key, value in figures.items() if side.answers(key) and value.get("rows")}
    own = answering_versions if side.model_version_id is None else {str(side.model_version_id)}
    shadow = total(value for key, value in figures.items() if key.role == ModelRole.SHADOW and key.model_version_id in own)
    return {
        "role": side.role,
        "model_versions": version_names(answering_versions) if answering_versions else [],
        "requests": requests,
        "answered": rows,
        "failovers": failed,
        "error_rate": None if failed is None else rate(failed, requests),
        "latency_ms": percentiles(answered.latency),
        "cache_hit_rate": rate(int(answered.get("cached")), rows),
        "decision_mix": {decision: rate(int(answered.get(decision)), rows) for decision in DECISIONS},
        "score": {"mean": answered.get("score_sum") / rows if rows else None, "histogram": answered.score},
        "outcomes": outcome_counts(answered),
        "shadow": shadow_counts(shadow),
    }


def model_health(side: Side, *, since: datetime, until: datetime) -> dict:
    """The side's health over ``[since, until)`` (the module's docstring defines every figure)."""
    return health_of(side, window_figures(side.product, since, until))


def slower_than(side: Side, *, since: datetime, until: datetime, ms: float) -> int:
    """How many of the side's answers took longer than ``ms``."""
    return count_above(answered_figures(side, window_figures(side.product, since, until)).latency, ms)


def samples(side: Side, *, since: datetime, until: datetime, limit: int = SAMPLE_LIMIT) -> dict[str, list[float]]:
    """The newest ``limit`` answers' scores and latencies, for two-sample tests and quantile intervals."""
    rows = answered_rows(side, since=since, until=until).order_by("-created_at").values_list("score", "latency_ms")[:limit]
    scores, latencies = [], []
    for score, latency in rows:
        scores.append(score)
        latencies.append(latency)
    return {"scores": scores, "latency_ms": latencies}
