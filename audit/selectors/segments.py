"""Segments, the pieces every reader of them shares: which segmentations a product has, their bins,
a row's bin, the bins' labels and why a feature cannot be segmented on.

Read by the comparison (`audit.selectors.comparison`, which bins a sample of each side's rows by
their values as the database reads them, `feature_value`) and by the backtest report
(`audit.backtests`, which counts each chunk of replayed rows into their bins as it is scored), both with
`Bins.indexes`, so that both draw the same bins from the same values and say the same thing when a
feature is not available:

- a feature (``{"feature": name, "bins": n}``) is binned by quantiles of production's logged values
  (the newest ``SAMPLE_LIMIT``); only the inner edges are kept, so the first and last bins are open
  and a value outside the range still lands somewhere; ties can merge edges, giving fewer bins;
- a score band (``{"score_band": [edges]}``) has fixed edges, the last bin closed (a score of 1);
- a feature that is redacted, missing or not a number is not available, with the reason.
"""

import itertools
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Case, CharField, F, Field, FloatField, Func, QuerySet, Value, When
from django.db.models.fields.json import KeyTextTransform, KeyTransform, compile_json_path
from django.db.models.functions import Cast
from django.db.models.lookups import In

from audit.rollups.figures import floats
from audit.selectors.health import SAMPLE_LIMIT

FEATURE = "feature"
SCORE_BAND = "score_band"


def segment_specs(product: str) -> list[dict]:
    """The segmentations configured for ``product`` (``EVIDENCE_SEGMENTS``, checked by `audit.checks`)."""
    return settings.EVIDENCE_SEGMENTS.get(product, [])


def _json_kind(feature: str) -> tuple[Func, list[str]] | None:
    """The JSON type of a logged feature and the names a number has, on the databases that say it."""
    if connection.vendor == "postgresql":
        return Func(KeyTransform(feature, "features"), function="jsonb_typeof", output_field=CharField()), ["number"]
    if connection.vendor == "sqlite":
        path = Value(compile_json_path([feature]))
        return Func(F("features"), path, function="JSON_TYPE", output_field=CharField()), ["integer", "real"]
    return None


def feature_value(feature: str):
    """A logged feature as a float, NULL when the row has no such key or a value that is no JSON number
    (PostgreSQL would fail the whole query on its cast, SQLite would read it as 0); names with spaces work."""
    number = Cast(KeyTextTransform(feature, "features"), FloatField())
    kind = _json_kind(feature)
    if kind is None:
        return number
    # Typed as a plain Field: the cast makes the database return a float (or NULL) already, and as a
    # FloatField Django would convert every row's value again (a converter call per row of a sample).
    return Case(When(In(kind[0], kind[1]), then=number), default=None, output_field=Field())


def number(value) -> float | None:
    """`feature_value` on a row already read: a JSON number as a float, else None (a bool is no number)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def redaction_reason(feature: str) -> str | None:
    """Why redaction leaves no number of ``feature`` in the log, or None."""
    if feature in settings.AUDIT_REDACT_DROP:
        return "dropped before logging (AUDIT_REDACT_DROP)"
    if feature in settings.AUDIT_REDACT_HASH:
        return "logged as a keyed hash, not a number (AUDIT_REDACT_HASH)"
    return None


def quantile_bounds(logged: list[tuple[str | None, float | None]], bins: int) -> tuple[list, str | None]:
    """``([(low, high), ...], None)``: ``bins`` quantile bins of the logged values; or ``([], why not)``.

    ``logged`` is ``(text, number)`` per production answer: the feature as logged (None when absent)
    and as a number (None when it is not one).
    """
    present = [(text, value) for text, value in logged if text is not None]
    if not present:
        return [], "not logged on production's answers in the window" if logged else "no production answers in the window"
    if any(value is None for _, value in present):
        return [], "its logged values are not all numbers"
    values = [value for _, value in present]
    if len(set(values)) < 2:
        return [], "production logged a single value in the window"
    # Inner quantiles only (the outer bins are open); ties can merge edges, so fewer bins than asked.
    edges = sorted({float(edge) for edge in np.quantile(values, np.linspace(0, 1, bins + 1))[1:-1]})
    return list(itertools.pairwise([None, *edges, None])), None


def label(name: str, low: float | None, high: float | None, *, closed: bool = False) -> str:
    if low is None:
        return f"{name} < {high:.4g}"
    if high is None:
        return f"{name} ≥ {low:.4g}"
    return f"{low:.4g} ≤ {name} {'≤' if closed else '<'} {high:.4g}"


@dataclass(frozen=True)
class Bins:
    """One segmentation's bins: what a row is binned by, the bounds ``low <= value < high`` (an open end
    where a bound is None; ``<=`` in the last bin when ``closed_last``), or why there are none."""

    kind: str  # FEATURE or SCORE_BAND
    feature: str | None
    bounds: list = field(default_factory=list)
    closed_last: bool = False
    reason: str | None = None

    @property
    def name(self) -> str:
        return self.feature if self.kind == FEATURE else "score"

    @property
    def available(self) -> bool:
        return self.reason is None

    def closed(self, index: int) -> bool:
        return self.closed_last and index == len(self.bounds) - 1

    def labels(self) -> list[str]:
        return [label(self.name, low, high, closed=self.closed(i)) for i, (low, high) in enumerate(self.bounds)]

    def indexes(self, values) -> np.ndarray:
        """The bin each of ``values`` (numbers, None or NaN for no value) falls in, -1 for none or outside every bin."""
        if not isinstance(values, np.ndarray):
            values = floats(list(values))
        found = np.full(values.shape, -1, dtype=np.intp)
        for i, (low, high) in enumerate(self.bounds):
            inside = ~np.isnan(values) & (found == -1)
            if low is not None:
                inside &= values >= low
            if high is not None:
                inside &= (values < high) | ((values == high) if self.closed(i) else False)
            found[inside] = i
        return found


def score_bands(spec: dict) -> Bins:
    edges = [float(edge) for edge in spec[SCORE_BAND]]
    return Bins(SCORE_BAND, None, list(itertools.pairwise(edges)), closed_last=True)


def logged_bins(feature: str, bins: int, logged: list[tuple[str | None, float | None]]) -> Bins:
    """Quantile bins of ``feature`` from production's logged values (`quantile_bounds`' ``logged``), or why none."""
    if reason := redaction_reason(feature):
        return Bins(FEATURE, feature, reason=reason)
    bounds, reason = quantile_bounds(logged, bins)
    return Bins(FEATURE, feature, bounds, reason=reason)


def feature_bins(rows: QuerySet, feature: str, bins: int) -> Bins:
    """Quantile bins of ``feature`` over ``rows`` (production's answers, newest first; the first ``SAMPLE_LIMIT``)."""
    if redaction_reason(feature):
        return logged_bins(feature, bins, [])
    logged = list(rows.values_list(KeyTextTransform(feature, "features"), feature_value(feature))[:SAMPLE_LIMIT])
    return logged_bins(feature, bins, logged)


def segment_bins(spec: dict, production_rows: QuerySet) -> Bins:
    """The bins of one configured segmentation, feature ones drawn from ``production_rows`` (newest first)."""
    if FEATURE in spec:
        return feature_bins(production_rows, spec[FEATURE], spec["bins"])
    return score_bands(spec)
