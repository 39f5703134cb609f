"""What a rollup counts of a set of log rows, and the one rule that says which outcome judges a row.

`Figures` is the sum over rows of one `Key` (product, role, model version, the model a canary
failed over from) in one period: plain counters, the sums means are made of, and the latency and
score histograms of `audit.rollups.histograms`. Figures add up, so the writer adds a batch's to the
stored minute and hour, a window's are the sum of its periods', and a relabelled row is taken out
under its old label and put back under its new one.

Counters (``counts``):

- ``rows``, ``cached``, one per decision (``allow``, ``review``, ``block``) and ``score_sum``;
- a shadow's comparison with the answer it shadowed: ``compared`` (``decision_agrees`` known),
  ``agreed``, ``classified`` (a diff class), one per diff class, ``score_diff_sum`` and ``score_diff_n``;
- the outcome confusion: ``negative_pass``, ``negative_block``, ``positive_pass``, ``positive_block``
  (label, and whether the row blocked), for the rows an outcome judges (`judging_label`).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np

from audit.rollups.histograms import LATENCY_BUCKETS, SCORE_BINS, latency_buckets, score_bins

DECISIONS = ("allow", "review", "block")
DIFF_CLASSES = ("minimal", "moderate", "significant")
CONFUSION = {
    (False, False): "negative_pass",
    (False, True): "negative_block",
    (True, False): "positive_pass",
    (True, True): "positive_block",
}
# The columns of a row (a log record or a PredictionLog values() dict) that `figures_by_group` counts
# (with the `Key` fields), and those the outcome rule and the minute need beside them.
COUNTED_FIELDS = (
    "product",
    "role",
    "model_version_id",
    "fallback_from_id",
    "decision",
    "cached",
    "score",
    "latency_ms",
    "decision_agrees",
    "diff_class",
    "score_diff",
)
ROW_FIELDS = ("prediction_id", "primary_prediction_id", "event_id", "created_at", *COUNTED_FIELDS)


class Key(NamedTuple):
    product: str
    role: str
    model_version_id: str
    fallback_from_id: str | None


def key_of(row: dict) -> Key:
    fallback = row.get("fallback_from_id")
    return Key(row["product"], row["role"], str(row["model_version_id"]), None if fallback is None else str(fallback))


@dataclass
class Figures:
    counts: dict[str, float] = field(default_factory=dict)
    latency: dict[int, int] = field(default_factory=dict)
    score: list[int] = field(default_factory=lambda: [0] * SCORE_BINS)

    def _count(self, name: str, amount: float = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount

    def relabel(self, row: dict, old: bool | None, new: bool | None) -> None:
        """Move a counted row from the outcome cell of ``old`` to that of ``new`` (None: unjudged)."""
        blocked = row["decision"] == "block"
        if old is not None:
            self._count(CONFUSION[(old, blocked)], -1)
        if new is not None:
            self._count(CONFUSION[(new, blocked)])

    def add(self, other: "Figures") -> "Figures":
        for name, value in other.counts.items():
            self._count(name, value)
        for bucket, count in other.latency.items():
            self.latency[bucket] = self.latency.get(bucket, 0) + count
        self.score = [mine + theirs for mine, theirs in zip(self.score, other.score, strict=True)]
        return self

    def get(self, name: str) -> float:
        return self.counts.get(name, 0)

    # Stored form (`audit.models.PredictionRollup`): JSON objects with text keys.
    def stored(self) -> tuple[dict, dict, list]:
        counts = {name: value for name, value in self.counts.items() if value}
        return counts, {str(bucket): count for bucket, count in self.latency.items() if count}, self.score

    @classmethod
    def from_stored(cls, counts: dict, latency: dict, score: list) -> "Figures":
        return cls(dict(counts), {int(bucket): count for bucket, count in latency.items()}, list(score))


def columns_of(rows: Iterable[Mapping]) -> dict[str, list]:
    """Rows (log records or values() dicts) as the columns `figures_by_group` reads (absent fields None)."""
    rows = list(rows)
    return {name: [row.get(name) for row in rows] for name in COUNTED_FIELDS}


def _where(values: np.ndarray, value) -> np.ndarray:
    """Which of ``values`` (an object array: numpy compares each item with ``==``) equal ``value``."""
    return np.asarray(values == value, dtype=bool)


def _objects(values: Sequence) -> np.ndarray:
    """A column as an object array, made once for the several `_where` comparisons it takes."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def floats(values: Sequence) -> np.ndarray:
    """Numbers as floats, NaN for None."""
    return np.array([np.nan if value is None else value for value in values], dtype=float)


def figures_by_group(columns: Mapping[str, Sequence], labels: Sequence[bool | None], groups: Sequence[int], size: int) -> list[Figures]:
    """The figures of some rows per group: row ``i`` (``columns[name][i]``, `COUNTED_FIELDS`) counts in
    group ``groups[i]`` (of ``size``), judged by ``labels[i]`` (None: no outcome judges it).

    The one definition of what a row adds, for a writer's batch and for thousands of sampled rows
    alike: numpy sums the counters of all rows at once, each in row order.
    """
    group = np.asarray(groups, dtype=np.intp)
    if group.size == 0:
        return [Figures() for _ in range(size)]

    def tally(where: np.ndarray) -> np.ndarray:
        return np.bincount(group[where], minlength=size)

    def summed(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=values, minlength=size)

    decisions, agrees, score_diffs = _objects(columns["decision"]), _objects(columns["decision_agrees"]), floats(columns["score_diff"])
    diff_classes, labels = _objects([name or "" for name in columns["diff_class"]]), _objects(labels)
    scores, latency = floats(columns["score"]), floats(columns["latency_ms"])
    blocked, judged, positive = _where(decisions, "block"), ~_where(labels, None), _where(labels, True)
    counters = {
        "rows": np.bincount(group, minlength=size),
        "cached": tally(np.array([bool(cached) for cached in columns["cached"]], dtype=bool)),
        **{decision: tally(_where(decisions, decision)) for decision in set(decisions)},
        "score_sum": summed(scores),
        "compared": tally(~_where(agrees, None)),
        "agreed": tally(np.array([bool(agree) for agree in agrees], dtype=bool)),
        "classified": tally(~_where(diff_classes, "")),
        **{name: tally(_where(diff_classes, name)) for name in set(diff_classes) - {""}},
        "score_diff_sum": summed(np.nan_to_num(score_diffs)),
        "score_diff_n": tally(~np.isnan(score_diffs)),
        **{cell: tally(judged & (positive == label) & (blocked == block)) for (label, block), cell in CONFUSION.items()},
    }
    latency_counts = np.bincount(group * LATENCY_BUCKETS + latency_buckets(latency), minlength=size * LATENCY_BUCKETS)
    score_counts = np.bincount(group * SCORE_BINS + score_bins(scores), minlength=size * SCORE_BINS)
    latency_counts, score_counts = latency_counts.reshape(size, LATENCY_BUCKETS), score_counts.reshape(size, SCORE_BINS)
    sums = {"score_sum", "score_diff_sum"}
    return [
        Figures(
            {name: (float if name in sums else int)(values[g]) for name, values in counters.items() if values[g]},
            {int(bucket): int(latency_counts[g, bucket]) for bucket in np.flatnonzero(latency_counts[g])},
            [int(count) for count in score_counts[g]],
        )
        for g in range(size)
    ]


def total(figures: Iterable[Figures]) -> Figures:
    summed = Figures()
    for item in figures:
        summed.add(item)
    return summed


# --- which outcome judges a row ----------------------------------------------------------------


class OutcomeSeen(NamedTuple):
    """An outcome as the rule reads it: ``(observed_at, pk)`` orders them, the latest judges."""

    product: str
    event_id: str
    prediction_id: str | None
    label: bool
    observed_at: datetime
    pk: int


def judging_label(row: dict, outcomes: Iterable[OutcomeSeen]) -> bool | None:
    """The label of the one outcome that judges ``row`` (of ``outcomes``, its event's), or None.

    The rule of `audit.rollups.selectors.outcome_label` (which reads it in SQL from raw rows): of
    the row's product's outcomes for its event that name this prediction, the answer it shadowed,
    or no prediction, the latest by ``observed_at``, then by arrival.
    """
    names = {None, str(row["prediction_id"])}
    if row.get("primary_prediction_id") is not None:
        names.add(str(row["primary_prediction_id"]))
    best = None
    for outcome in outcomes:
        judges = outcome.product == row["product"] and outcome.event_id == row["event_id"] and outcome.prediction_id in names
        if judges and (best is None or (outcome.observed_at, outcome.pk) > (best.observed_at, best.pk)):
            best = outcome
    return None if best is None else best.label
