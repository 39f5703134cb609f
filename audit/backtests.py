"""Backtests, the audit side: which logged rows a backtest replays, the report it makes, whether it passes.

A backtest scores a candidate model version on what production actually received (the features
of its product's production rows, as logged after redaction) and sets the candidate's decisions
beside the ones production made. The work is split by the import rules:

- here (`audit`, which may not import the serving code): the rows to replay (`backtest_rows`),
  whether a row can be replayed at all (`unreplayable`: a feature dropped or hashed by
  `audit.redaction` cannot be), the running counts (`Tally`), the report built from them
  (`backtest_report`, one section function each, so a section is one more entry in `SECTIONS`),
  the verdict against the ``BACKTEST_*`` thresholds and the validation gate (`backtest_gate`,
  reached by the registry through `mlops.hooks.backtest_gate`);
- `inference.backtests`: loading the candidate's verified session and scoring the rows in
  batched session runs, off the serving path, and the record's life (queued, running, done,
  failed).

Outcomes judge rows by the one rule, `audit.rollups.selectors.outcome_label`; rates carry Wilson
intervals and their differences Newcombe intervals and Fisher p-values (`audit.evidence`); score
differences are classed as the shadow's are (`audit.diffs.classify_diff`).

Segments (``EVIDENCE_SEGMENTS``, the comparison page's, binned by `audit.selectors.segments`): the
bins are fixed before any row is scored (`backtest_segments`: one query per feature segmentation of
the rows to replay, the newest ``SAMPLE_LIMIT``, which are production's logged values, as the
comparison bins on), then each scored row is counted into its bin (`SegmentTally`), so a report of
a million rows keeps a few counters per bin, not the rows. Score bands bin by production's logged
score: the candidate's own would put the two sides of a bin on different rows. Each bin gets the
figures of the whole, with the comparison's rate comparison and verdict sentences.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from audit.diffs import classify_diff
from audit.evidence.comparison import RATES, rate_comparison
from audit.evidence.proportions import rate, rate_difference
from audit.models import Backtest, BacktestStatus, DiffClass, PredictionLog
from audit.redaction import HASH_PREFIX
from audit.rollups.selectors import outcome_label
from audit.selectors.comparison import rate_verdict
from audit.selectors.health import SAMPLE_LIMIT
from audit.selectors.segments import FEATURE, SCORE_BAND, Bins, number, segment_bins, segment_specs
from mlops.choices import Decision, ModelRole, ModelStatus
from mlops.models import ModelVersion

DECISIONS = [Decision.ALLOW.value, Decision.REVIEW.value, Decision.BLOCK.value]  # in order of severity
SEVERITY = {decision: index for index, decision in enumerate(DECISIONS)}
# Why a logged row cannot be replayed.
HASHED = "hashed_by_redaction"
DROPPED = "dropped_by_redaction"
MISSING = "missing_feature"  # not in the log and not a dropped key: the candidate takes a feature production was not sent
INVALID = "invalid_features"  # present but not a value the candidate takes (the error names them)
NON_FINITE = "non_finite_score"  # the candidate scored the row as NaN or infinity
SKIP_REASONS = {
    HASHED: "a feature the candidate takes was hashed by redaction (AUDIT_REDACT_HASH)",
    DROPPED: "a feature the candidate takes was dropped by redaction (AUDIT_REDACT_DROP)",
    MISSING: "a feature the candidate takes is not in the logged features",
    INVALID: "a logged feature is not a value the candidate takes",
    NON_FINITE: "the candidate's score was not a finite number",
}
ROW_FIELDS = ("prediction_id", "model_version_id", "features", "score", "decision", "latency_ms", "created_at", "outcome_label")
FEATURES_SHOWN = 20  # per skip reason, the features most often involved
SIDES = ("production", "candidate")
OUTCOME_RATES = [(name, unit) for name, path, unit in RATES if path[0] == "outcomes"]  # the comparison's, in its units
BINNED_BY = {
    FEATURE: f"quantiles of the logged values of the rows to replay (production's values; the newest {SAMPLE_LIMIT:,}), "
    "each row in the bin of its own logged value",
    SCORE_BAND: "production's logged score: the candidate's own score would put the two sides of a bin on different rows",
}


def backtest_rows(*, product: str, until: datetime, since: datetime | None = None, last: int | None = None) -> QuerySet:
    """The production answers of ``product`` logged over ``[since, until)``, newest first, at most ``last``,
    each annotated with the label of the outcome that judges it (``outcome_label``, NULL without one)."""
    rows = PredictionLog.objects.filter(product=product, role=ModelRole.PRODUCTION, created_at__lt=until)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    rows = rows.order_by("-created_at", "-prediction_id").annotate(outcome_label=outcome_label())
    return rows[:last] if last is not None else rows


def unreplayable(features, names) -> tuple[str, list[str]] | None:
    """``(reason, features involved)`` when a logged row cannot be given to a model taking ``names``, else None.

    Hashed first: a row with a hashed and a dropped feature is reported for its hashed ones.
    """
    if not isinstance(features, dict):
        return INVALID, []
    hashed = [name for name in names if isinstance(features.get(name), str) and features[name].startswith(HASH_PREFIX)]
    if hashed:
        return HASHED, hashed
    missing = [name for name in names if name not in features]
    if missing:
        dropped = [name for name in missing if name in set(settings.AUDIT_REDACT_DROP)]
        return (DROPPED, dropped) if dropped else (MISSING, missing)
    return None


def _count_outcome(outcomes: dict, label: bool | None, production: str, candidate: str) -> None:
    """One row's outcome into both sides' counts (``outcomes[side]``), by whether each side blocked it."""
    if label is None:
        return
    for side, decision in (("production", production), ("candidate", candidate)):
        counts = outcomes[side]
        counts["positives" if label else "negatives"] += 1
        if decision == Decision.BLOCK:
            counts["true_positives" if label else "false_positives"] += 1


def _outcomes() -> dict:
    return {side: Counter() for side in SIDES}


@dataclass
class SegmentTally:
    """One segmentation's running counts per bin: rows scored, decisions agreed, both sides' outcomes."""

    bins: Bins
    rows: list = field(default_factory=list)
    agreed: list = field(default_factory=list)
    outcomes: list = field(default_factory=list)
    outside: int = 0  # scored rows in no bin: no number logged for the feature, or a score outside the bands

    def __post_init__(self):
        size = len(self.bins.bounds)
        self.rows, self.agreed, self.outcomes = [0] * size, [0] * size, [_outcomes() for _ in range(size)]

    def _value(self, row: dict) -> float | None:
        if self.bins.kind != FEATURE:
            return row["score"]
        return number(row["features"].get(self.bins.feature)) if isinstance(row["features"], dict) else None

    def add(self, rows: list[dict], decisions: list[str]) -> None:
        for row, decision, index in zip(rows, decisions, self.bins.indexes(map(self._value, rows)), strict=True):
            if index < 0:
                self.outside += 1
                continue
            self.rows[index] += 1
            self.agreed[index] += decision == row["decision"]
            _count_outcome(self.outcomes[index], row.get("outcome_label"), row["decision"], decision)


def backtest_segments(*, product: str, rows: QuerySet) -> list[SegmentTally]:
    """The product's segmentations, their bins drawn from ``rows`` (the rows to replay, newest first), empty counts."""
    return [SegmentTally(segment_bins(spec, rows)) for spec in segment_specs(product)]


@dataclass
class Tally:
    """What a backtest counted so far; `backtest_report` reads it. Sections of later parts add their own counts."""

    considered: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_features: dict = field(default_factory=dict)  # reason -> Counter of features
    confusion: dict = field(default_factory=lambda: {p: dict.fromkeys(DECISIONS, 0) for p in DECISIONS})
    diff_classes: Counter = field(default_factory=Counter)
    score_diffs: list = field(default_factory=list)
    production_latency_ms: list = field(default_factory=list)
    production_models: Counter = field(default_factory=Counter)
    outcomes: dict = field(default_factory=_outcomes)
    segments: list = field(default_factory=list)  # SegmentTally per configured segmentation (`backtest_segments`)
    runs: int = 0  # batched session runs
    run_rows: list = field(default_factory=list)
    run_ms: list = field(default_factory=list)
    single_row_ms: list = field(default_factory=list)
    first_row_at: datetime | None = None
    last_row_at: datetime | None = None

    @property
    def scored(self) -> int:
        return len(self.score_diffs)

    def see(self, row: dict) -> None:
        self.considered += 1
        created = row["created_at"]
        self.first_row_at = created if self.first_row_at is None else min(self.first_row_at, created)
        self.last_row_at = created if self.last_row_at is None else max(self.last_row_at, created)

    def skip(self, reason: str, features=()) -> None:
        self.skipped[reason] += 1
        self.skipped_features.setdefault(reason, Counter()).update(features)

    def run(self, rows: int, ms: float) -> None:
        self.runs += 1
        self.run_rows.append(rows)
        self.run_ms.append(ms)

    def add(self, rows: list[dict], *, scores: list[float], decisions: list[str]) -> None:
        """Replayed rows: production's logged answers beside the candidate's scores and decisions."""
        for row, score, decision in zip(rows, scores, decisions, strict=True):
            self.confusion[row["decision"]][decision] += 1
            _, diff_class = classify_diff(row["score"], score)
            self.score_diffs.append(score - row["score"])
            self.diff_classes[str(diff_class)] += 1
            self.production_latency_ms.append(row["latency_ms"])
            self.production_models[str(row["model_version_id"])] += 1
            _count_outcome(self.outcomes, row.get("outcome_label"), row["decision"], decision)
        for segment in self.segments:  # a chunk's bins at once
            segment.add(rows, decisions)


# --- The report: one function per section ------------------------------------------------------


def _percentiles(values) -> dict:
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    array = np.asarray(values, dtype=float)
    p50, p95, p99 = (float(v) for v in np.percentile(array, [50, 95, 99]))  # linear, as percentile_cont
    return {"n": int(array.size), "mean": float(array.mean()), "p50": p50, "p95": p95, "p99": p99, "max": float(array.max())}


def rows_section(tally: Tally) -> dict:
    skipped = sum(tally.skipped.values())
    return {
        "considered": tally.considered,
        "scored": tally.scored,
        "skipped": skipped,
        "first_logged_at": tally.first_row_at.isoformat() if tally.first_row_at else None,
        "last_logged_at": tally.last_row_at.isoformat() if tally.last_row_at else None,
        "production_models": dict(tally.production_models),
    }


def skipped_section(tally: Tally) -> dict:
    return {
        reason: {
            "rows": count,
            "why": SKIP_REASONS.get(reason, reason),
            "features": dict(tally.skipped_features.get(reason, Counter()).most_common(FEATURES_SHOWN)),
        }
        for reason, count in tally.skipped.most_common()
    }


def decisions_section(tally: Tally) -> dict:
    agreed = sum(tally.confusion[d][d] for d in DECISIONS)
    stricter = sum(n for p, row in tally.confusion.items() for c, n in row.items() if SEVERITY[c] > SEVERITY[p])
    lenient = sum(n for p, row in tally.confusion.items() for c, n in row.items() if SEVERITY[c] < SEVERITY[p])
    mix = {side: Counter() for side in ("production", "candidate")}
    for p, row in tally.confusion.items():
        for c, n in row.items():
            mix["production"][p] += n
            mix["candidate"][c] += n
    return {
        "agreement": rate(agreed, tally.scored),
        "confusion": {"rows": "production", "columns": "candidate", "decisions": DECISIONS, "counts": tally.confusion},
        "stricter": stricter,  # the candidate's decision is more severe than production's
        "more_lenient": lenient,
        "mix": {side: {d: rate(counts[d], tally.scored) for d in DECISIONS} for side, counts in mix.items()},
    }


def score_diff_section(tally: Tally) -> dict:
    diffs = np.asarray(tally.score_diffs, dtype=float)
    return {
        "classes": {cls.value: rate(tally.diff_classes[cls.value], tally.scored) for cls in DiffClass},
        "thresholds": {"moderate": settings.SHADOW_DIFF_MODERATE, "significant": settings.SHADOW_DIFF_SIGNIFICANT},
        "mean_difference": float(diffs.mean()) if diffs.size else None,  # candidate - production
        "mean_absolute_difference": float(np.abs(diffs).mean()) if diffs.size else None,
        "max_absolute_difference": float(np.abs(diffs).max()) if diffs.size else None,
    }


def _outcome_rates(counts: Counter) -> dict:
    return {
        "labelled": counts["positives"] + counts["negatives"],
        "negatives": counts["negatives"],
        "positives": counts["positives"],
        "false_positive_rate": rate(counts["false_positives"], counts["negatives"]),
        "true_positive_rate": rate(counts["true_positives"], counts["positives"]),
    }


def outcomes_section(tally: Tally) -> dict:
    sides = {side: _outcome_rates(counts) for side, counts in tally.outcomes.items()}
    # Both sides are judged on the same rows: the differences are of paired rates, reported with the
    # (conservative, unpaired) Newcombe interval and Fisher test the comparison page uses.
    return {
        **sides,
        "false_positive_rate_difference": rate_difference(
            sides["candidate"]["false_positive_rate"], sides["production"]["false_positive_rate"]
        ),
        "true_positive_rate_difference": rate_difference(
            sides["candidate"]["true_positive_rate"], sides["production"]["true_positive_rate"]
        ),
    }


def _segment_bin(segment: SegmentTally, index: int, text: str, *, detectable: float) -> dict:
    low, high = segment.bins.bounds[index]
    sides = {side: _outcome_rates(counts) for side, counts in segment.outcomes[index].items()}
    # As in the outcomes section: paired rows, the comparison's (conservative, unpaired) interval and test.
    evidence = {
        name: rate_comparison(sides["candidate"][name], sides["production"][name], detectable=detectable, unit=unit)
        for name, unit in OUTCOME_RATES
    }
    return {
        "label": text,
        "low": low,
        "high": high,
        "rows": segment.rows[index],
        "agreement": rate(segment.agreed[index], segment.rows[index]),
        **sides,
        "evidence": evidence,
        "verdicts": {name: rate_verdict(figure, detectable=detectable, subject="candidate") for name, figure in evidence.items()},
    }


def segments_section(tally: Tally) -> list:
    """Per configured segmentation and bin: rows, agreement, both sides' outcome rates, their difference, a verdict."""
    detectable = settings.EVIDENCE_DETECTABLE_DIFFERENCE
    return [
        {
            "kind": segment.bins.kind,
            "feature": segment.bins.feature,
            "available": segment.bins.available,
            "reason": segment.bins.reason,
            "binned_by": BINNED_BY[segment.bins.kind],
            "outside": segment.outside,
            "bins": [_segment_bin(segment, i, text, detectable=detectable) for i, text in enumerate(segment.bins.labels())],
        }
        for segment in tally.segments
    ]


def latency_section(tally: Tally) -> dict:
    rows = sum(tally.run_rows)
    return {
        "runs": tally.runs,
        "rows_per_run": {"max": max(tally.run_rows, default=0), "mean": rows / tally.runs if tally.runs else None},
        "batch_ms_per_row": sum(tally.run_ms) / rows if rows else None,
        "batch_run_ms": _percentiles(tally.run_ms),
        "candidate_single_row_ms": _percentiles(tally.single_row_ms),  # the model run alone, one row a run
        "production_logged_ms": _percentiles(tally.production_latency_ms),  # as logged: the serving path's model time
    }


SECTIONS = {
    "rows": rows_section,
    "skipped": skipped_section,
    "decisions": decisions_section,
    "score_diff": score_diff_section,
    "outcomes": outcomes_section,
    "segments": segments_section,
    "latency_ms": latency_section,
}


@dataclass(frozen=True)
class Thresholds:
    min_rows: int
    min_agreement: float
    max_fp_rate_increase: float
    min_outcomes: int

    @classmethod
    def from_settings(cls) -> "Thresholds":
        return cls(
            min_rows=settings.BACKTEST_MIN_ROWS,
            min_agreement=settings.BACKTEST_MIN_AGREEMENT,
            max_fp_rate_increase=settings.BACKTEST_MAX_FP_RATE_INCREASE,
            min_outcomes=settings.BACKTEST_MIN_OUTCOMES,
        )


def backtest_verdict(report: dict, thresholds: Thresholds) -> dict:
    """Whether ``report`` passes ``thresholds``: ``{passed, failures, thresholds}``, each failure a sentence."""
    failures = []
    scored = report["rows"]["scored"]
    if scored < thresholds.min_rows:
        failures.append(f"{scored} rows scored, fewer than the {thresholds.min_rows} required (BACKTEST_MIN_ROWS)")
    agreement = report["decisions"]["agreement"]["value"]
    if agreement is not None and agreement < thresholds.min_agreement:
        failures.append(f"decisions agree on {agreement:.1%} of rows, below {thresholds.min_agreement:.1%} (BACKTEST_MIN_AGREEMENT)")
    negatives = report["outcomes"]["production"]["negatives"]
    if negatives < thresholds.min_outcomes:
        failures.append(f"{negatives} rows with a negative outcome, fewer than {thresholds.min_outcomes} (BACKTEST_MIN_OUTCOMES)")
    increase = report["outcomes"]["false_positive_rate_difference"]["difference"]
    if increase is not None and increase > thresholds.max_fp_rate_increase:
        failures.append(
            f"false-positive rate {increase:+.2%} above production's, more than {thresholds.max_fp_rate_increase:.2%} "
            "(BACKTEST_MAX_FP_RATE_INCREASE)"
        )
    return {"passed": not failures, "failures": failures, "thresholds": thresholds.__dict__.copy()}


def backtest_report(tally: Tally, *, model: dict, window: dict, thresholds: Thresholds | None = None) -> dict:
    """The report of a backtest: the candidate, the window, one entry per `SECTIONS` and the verdict."""
    report = {"model": model, "window": window, **{name: section(tally) for name, section in SECTIONS.items()}}
    report["verdict"] = backtest_verdict(report, thresholds or Thresholds.from_settings())
    return report


# --- Reads --------------------------------------------------------------------------------------


def backtest_get(*, backtest_id) -> Backtest | None:
    return Backtest.objects.select_related("model_version", "created_by").filter(pk=backtest_id).first()


def backtest_gate(*, model_version_id) -> str | None:
    """Why ``model_version_id`` may not be validated yet (``BACKTEST_REQUIRED_FOR_VALIDATION``), or None.

    The newest finished backtest of the version within ``BACKTEST_MAX_AGE_DAYS`` decides, judged
    against the thresholds in force now (a later failing backtest outweighs an earlier passing one).
    A product's first version is not held to it: without a production version there is no logged
    traffic to replay nor decisions to compare with.
    """
    model_version = ModelVersion.objects.filter(pk=model_version_id).first()
    if model_version is None or not ModelVersion.objects.filter(product=model_version.product, status=ModelStatus.PRODUCTION).exists():
        return None
    since = timezone.now() - timedelta(days=settings.BACKTEST_MAX_AGE_DAYS)
    latest = (
        Backtest.objects.filter(model_version_id=model_version_id, status=BacktestStatus.DONE, finished_at__gte=since)
        .order_by("-finished_at")
        .first()
    )
    how = f"run `manage.py backtest --model {model_version_id}`, POST /v1/backtests or the admin action"
    if latest is None:
        return (
            f"model version {model_version_id} has no finished backtest on logged traffic in the last "
            f"{settings.BACKTEST_MAX_AGE_DAYS} days, which BACKTEST_REQUIRED_FOR_VALIDATION requires: {how}"
        )
    verdict = backtest_verdict(latest.report, Thresholds.from_settings())
    if not verdict["passed"]:
        return f"the latest backtest ({latest.pk}) of model version {model_version_id} does not pass: " + "; ".join(verdict["failures"])
    return None
