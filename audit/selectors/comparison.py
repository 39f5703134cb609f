"""The canary against production: both sides' health, the evidence on every difference, per segment.

Built on the one definition of health (`audit.selectors.health`) and the statistics of
`audit.evidence.comparison`, so that the comparison page, ``GET /v1/audit/compare`` and anything
else that sets the canary beside production read the same figures for the same window.

- **Sides.** With a `CanaryConfig` naming a canary model, production is its ``production_model``
  and the canary its ``canary_model``; otherwise each side is every version that played the role
  in the window.
- **Evidence.** ``compare()`` of the canary (side *a*) against production (side *b*): the
  false-positive, true-positive and block rates, the score and latency distributions and the p95
  ratio; beside them the other rates of health (allow and review shares, cache hits, shadow
  agreement and significant diffs) with the same rate comparison. Every difference is canary
  minus production.
- **Verdicts.** One plain sentence per figure, from its p-value at ``1 - CONFIDENCE`` and, when
  the sample is small, how many more observations would detect ``EVIDENCE_DETECTABLE_DIFFERENCE``.
- **Segments** (``EVIDENCE_SEGMENTS``, per product): a logged feature binned by quantiles of the
  production side's values in the window (the newest ``SAMPLE_LIMIT``), or fixed score bands
  (`audit.selectors.segments`, shared with the backtest report). A row belongs to a bin by its own
  logged value (its score, for a band), and each bin gets the same health and evidence as the whole.
  The first and last feature bins are open, so canary values outside production's range still land
  somewhere. A feature that is redacted, missing or not a number in the window is reported as not
  available, with the reason. A bin's figures cannot come from the rollups: each side's newest
  ``SAMPLE_LIMIT`` answers (and as many of its failovers and shadow runs) are read once, with
  their segmented features and the answers' outcomes (`side_sample`), as columns; every bin's
  health is summed from them by `audit.rollups.figures.figures_by_group` (the writer's own sum,
  all bins at once) and the whole window's two-sample figures use the same answers, so a long
  window costs two bounded reads a side however many bins it has.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db.models import BooleanField, CharField, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from audit.evidence.comparison import compare, rate_comparison
from audit.evidence.proportions import CONFIDENCE
from audit.rollups.figures import COUNTED_FIELDS, Figures, Key, figures_by_group
from audit.rollups.histograms import SCORE_BINS
from audit.rollups.selectors import minute_floor, outcome_label, window_figures
from audit.selectors.health import SAMPLE_LIMIT, Side, answered_rows, health_of, samples, window_rows
from audit.selectors.segments import FEATURE, Bins, feature_value, logged_bins, redaction_reason, score_bands, segment_specs
from mlops.choices import Decision, ModelRole
from mlops.models import CanaryConfig

ALPHA = 1 - CONFIDENCE

# The rates of health compared beside `compare()`'s own, as (name, where the rate is, what its denominators count).
MORE_RATES = (
    ("allow_rate", ("decision_mix", Decision.ALLOW.value), "requests"),
    ("review_rate", ("decision_mix", Decision.REVIEW.value), "requests"),
    ("cache_hit_rate", ("cache_hit_rate",), "requests"),
    ("shadow_agreement_rate", ("shadow", "agreement_rate"), "compared shadow runs"),
    ("shadow_significant_rate", ("shadow", "significant_rate"), "classified shadow runs"),
)
RATE_NAMES = ("false_positive_rate", "true_positive_rate", "block_rate", *(name for name, _, _ in MORE_RATES))


def comparison_sides(product: str) -> tuple[Side, Side]:
    """Production and canary of ``product``: the configured versions while a canary runs, else every version of each role."""
    config = CanaryConfig.objects.filter(product=product, canary_model__isnull=False).first()
    if config is None:
        return Side(product, ModelRole.PRODUCTION), Side(product, ModelRole.CANARY)
    return Side(product, ModelRole.PRODUCTION, config.production_model_id), Side(product, ModelRole.CANARY, config.canary_model_id)


def _at(health: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        health = health[key]
    return health


def _p(value: float) -> str:
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def _points(difference: float) -> str:
    return f"{difference * 100:g}-point"


def rate_verdict(figure: dict, *, detectable: float, subject: str = "canary") -> str:
    """One sentence on a rate comparison: which side is higher if the evidence says so, else what is missing.

    ``subject`` names side *a*: the canary here, the candidate in a backtest report, in the same words."""
    if figure["p_value"] is None:
        words = "not comparable: a side has no " + figure["unit"]
    elif figure["p_value"] < ALPHA:
        return f"{subject} {'higher' if figure['difference'] > 0 else 'lower'} ({_p(figure['p_value'])})"
    else:
        words = f"no evidence of a difference ({_p(figure['p_value'])})"
    if figure["more_needed"]:  # what the silence is worth: a difference of `detectable` could still hide here
        words += f"; needs {figure['more_needed']} more {figure['unit']} to detect a {_points(detectable)} difference"
    return words


def distribution_verdict(figure: dict, *, what: str) -> str:
    """Mann-Whitney's answer in words, with the probability of superiority as its size."""
    if figure["mann_whitney_p"] is None:
        return f"not comparable: a side has no {what}"
    if figure["mann_whitney_p"] < ALPHA:
        direction = "higher" if figure["superiority"] > 0.5 else "lower"
        return f"canary {what} tend {direction} ({_p(figure['mann_whitney_p'])}, P(canary > production) = {figure['superiority']:.2f})"
    if figure["ks_p"] is not None and figure["ks_p"] < ALPHA:
        return f"{what} differ in shape, neither side higher (KS D = {figure['ks_statistic']:.2f}, {_p(figure['ks_p'])})"
    return f"no evidence of a difference ({_p(figure['mann_whitney_p'])})"


def ratio_verdict(ratio: dict) -> str:
    """The p95 ratio in words: slower or faster only when its whole interval is on one side of 1."""
    if ratio["ratio"] is None:
        return "not comparable: a side has no latencies"
    if ratio["low"] is not None and ratio["low"] > 1:
        return f"canary p95 slower: {ratio['ratio']:.2f}x production (at least {ratio['low']:.2f}x)"
    if ratio["high"] is not None and ratio["high"] < 1:
        return f"canary p95 faster: {ratio['ratio']:.2f}x production (at most {ratio['high']:.2f}x)"
    if ratio["low"] is None or ratio["high"] is None:
        return f"{ratio['ratio']:.2f}x production; too few answers for an interval on both sides"
    return f"no evidence of a difference ({ratio['ratio']:.2f}x, interval {ratio['low']:.2f}-{ratio['high']:.2f} spans 1)"


def evidence(production: dict, canary: dict, samples_production: dict, samples_canary: dict, *, detectable: float) -> dict:
    """`compare()` of canary against production, the other rates of health beside it, and a verdict for each figure."""
    figures = compare(canary, production, samples_a=samples_canary, samples_b=samples_production, detectable=detectable)
    for name, path, unit in MORE_RATES:
        figures[name] = rate_comparison(_at(canary, path), _at(production, path), detectable=detectable, unit=unit)
    verdicts = {name: rate_verdict(figures[name], detectable=detectable) for name in RATE_NAMES}
    verdicts["score"] = distribution_verdict(figures["score"], what="scores")
    verdicts["latency"] = distribution_verdict(figures["latency"], what="latencies")
    verdicts["p95_ratio"] = ratio_verdict(figures["latency"]["p95_ratio"])
    return {"evidence": figures, "verdicts": verdicts}


def _sides_compared(sides: tuple[Side, Side], drawn: tuple[dict, dict], figures: dict[Key, Figures], *, detectable: float) -> dict:
    production, canary = (health_of(side, figures) for side in sides)
    return {"production": production, "canary": canary, **evidence(production, canary, *drawn, detectable=detectable)}


# --- segments ---------------------------------------------------------------------------------


def _value_name(index: int) -> str:
    return f"segment_value_{index}"


def _uuid_text(text: str) -> str:
    """A UUID read as text, as `key_of` writes it (SQLite keeps UUIDs as bare hex)."""
    return str(uuid.UUID(text))


@dataclass(frozen=True)
class SideSample:
    """The rows a side's segments are read from (`side_sample`), as columns, with what every
    segmentation reads of them once: each row's key (an index into ``keys``), whether it is one of
    the side's answers, its outcome label, score and latency."""

    columns: dict[str, tuple]
    keys: list[Key]
    key_index: np.ndarray
    answered: np.ndarray
    scores: np.ndarray
    latency_ms: np.ndarray

    @classmethod
    def of(cls, side: Side, fields: tuple[str, ...], rows: list[tuple]) -> "SideSample":
        columns = dict(zip(fields, zip(*rows, strict=True), strict=True)) if rows else {name: () for name in fields}
        keys: dict[tuple, int] = {}
        raw = zip(columns["product"], columns["role"], columns["model_version_id"], columns["fallback_from_id"], strict=True)
        key_index = np.fromiter((keys.setdefault(key, len(keys)) for key in raw), dtype=np.intp, count=len(rows))
        keys_read = [
            Key(product, role, _uuid_text(version), fallback and _uuid_text(fallback)) for product, role, version, fallback in keys
        ]
        answers = np.array([side.answers(key) for key in keys_read], dtype=bool)
        return cls(
            columns=columns,
            keys=keys_read,
            key_index=key_index,
            answered=answers[key_index],
            scores=np.array(columns["score"], dtype=float),
            latency_ms=np.array(columns["latency_ms"], dtype=float),
        )

    def drawn(self, where: np.ndarray | None = None) -> dict:
        """The scores and latencies of the side's answers (those ``where`` says, when given): `samples`' figures."""
        chosen = self.answered if where is None else self.answered & where
        return {"scores": self.scores[chosen], "latency_ms": self.latency_ms[chosen]}


# The key's versions read as text (`side_sample`): a UUID made per row would cost more than the rest of the row.
_AS_TEXT = {"model_version_id": "version_text", "fallback_from_id": "fallback_text"}


def side_sample(side: Side, *, since: datetime, until: datetime, features: dict[int, str], figures: dict[Key, Figures]) -> SideSample:
    """The rows a side's segments are read from, newest first: its newest ``SAMPLE_LIMIT`` answers (the
    rows `samples` reads), and as many of its failovers and of its versions' shadow runs, each row with
    its outcome label (an answer's; None for the others) and the value of every segmented feature
    (``segment_value_<i>``, None when not a number, and ``segment_value_<i>_text``, None when absent).
    ``figures``: the window's rollups, which say whether there are shadow runs or failovers to read:
    a walk of the log's indexes for rows that are not there would read every row of the version or
    the window."""
    annotations = {text: Cast(name, CharField()) for name, text in _AS_TEXT.items()}
    annotations |= {_value_name(i): feature_value(feature) for i, feature in features.items()}
    annotations |= {f"{_value_name(i)}_text": KeyTextTransform(feature, "features") for i, feature in features.items()}
    fields = (*COUNTED_FIELDS, "outcome_label", *(name for name in annotations if name not in _AS_TEXT.values()))
    read = tuple(_AS_TEXT.get(name, name) for name in fields)

    def newest(rows, *, judged: bool = False) -> list[tuple]:
        # Only the answers are judged: a side's health reads no outcome of its shadow runs or
        # failovers (`health_of`), and the outcome is a subquery per row.
        label = outcome_label() if judged else Value(None, output_field=BooleanField())
        rows = rows.order_by("-created_at").annotate(outcome_label=label, **annotations)
        return list(rows.values_list(*read)[:SAMPLE_LIMIT])

    answered = newest(answered_rows(side, since=since, until=until), judged=True)
    version = fields.index("model_version_id")
    versions = {_uuid_text(text) for text in {row[version] for row in answered}} or (
        {str(side.model_version_id)} if side.model_version_id else set()
    )
    window = window_rows(side.product, since, until)
    logged = {key for key, value in figures.items() if value.get("rows")}
    shadowed = {key.model_version_id for key in logged if key.role == ModelRole.SHADOW and key.model_version_id in versions}
    others = newest(window.filter(role=ModelRole.SHADOW, model_version_id__in=shadowed)) if shadowed else []
    if any(side.failed_over(key) for key in logged):
        failovers = window.filter(fallback_from__isnull=False)
        others += newest(failovers if side.model_version_id is None else failovers.filter(fallback_from_id=side.model_version_id))
    return SideSample.of(side, fields, answered + others)


def _binned(side: Side, sample: SideSample, bins: Bins, values) -> list[tuple[dict, dict]]:
    """Per bin: the side's health over its sample rows in the bin, and its answers' scores and latencies."""
    index = bins.indexes(values)
    size, width = len(bins.bounds), len(sample.keys)
    # Rows in no bin count in one group more, left out.
    groups = np.where(index >= 0, index * width + sample.key_index, size * width)
    summed = figures_by_group(sample.columns, sample.columns["outcome_label"], groups, size * width + 1)
    return [
        (health_of(side, dict(zip(sample.keys, summed[i * width : (i + 1) * width], strict=True))), sample.drawn(index == i))
        for i in range(size)
    ]


def segmentation(spec: dict, index: int, sides: tuple[Side, Side], sampled: tuple[SideSample, SideSample], *, detectable: float) -> dict:
    """One configured segmentation: its bins, each with both sides' health and the evidence, from the sides' samples."""
    if FEATURE in spec:
        name, production = _value_name(index), sampled[0]
        unread = redaction_reason(spec[FEATURE])  # not in the sample: the log holds no number of it
        answers = np.flatnonzero(production.answered)
        logged = [] if unread else [(production.columns[f"{name}_text"][i], production.columns[name][i]) for i in answers]
        bins = logged_bins(spec[FEATURE], spec["bins"], logged)
        columns = [sample.columns[name] for sample in sampled] if bins.bounds else []  # no column of a redacted feature
    else:
        bins = score_bands(spec)
        columns = [sample.scores for sample in sampled]
    result = {"kind": bins.kind, "feature": bins.feature, "available": bins.available, "reason": bins.reason, "bins": []}
    if not bins.bounds:
        return result
    per_side = [_binned(side, sample, bins, values) for side, sample, values in zip(sides, sampled, columns, strict=True)]
    for (low, high), text, (production, sample_p), (canary, sample_c) in zip(bins.bounds, bins.labels(), *per_side, strict=True):
        result["bins"].append(
            {
                "label": text,
                "low": low,
                "high": high,
                "production": production,
                "canary": canary,
                **evidence(production, canary, sample_p, sample_c, detectable=detectable),
            }
        )
    return result


# --- the comparison ---------------------------------------------------------------------------


def canary_comparison(*, product: str, window: timedelta, now: datetime | None = None) -> dict:
    """Canary against production over the last ``window``: the figures of the comparison page and API."""
    until = now or timezone.now()
    since = minute_floor(until - window)  # the window in whole minutes, none of it read from raw rows
    detectable = settings.EVIDENCE_DETECTABLE_DIFFERENCE
    sides = comparison_sides(product)
    specs = segment_specs(product)
    features = {i: spec[FEATURE] for i, spec in enumerate(specs) if FEATURE in spec and not redaction_reason(spec[FEATURE])}
    figures = window_figures(product, since, until)
    sampled = tuple(side_sample(side, since=since, until=until, features=features, figures=figures) for side in sides) if specs else ()
    # With segments, each side's sample holds the newest answers `samples` would read again.
    drawn = tuple(sample.drawn() for sample in sampled) or tuple(samples(side, since=since, until=until) for side in sides)
    return {
        "product": product,
        "window_seconds": int(window.total_seconds()),
        "since": since,
        "until": until,
        "confidence": CONFIDENCE,
        "detectable_difference": detectable,
        "histogram_edges": [round(i / SCORE_BINS, 4) for i in range(SCORE_BINS + 1)],
        **_sides_compared(sides, drawn, figures, detectable=detectable),
        "segments": [segmentation(spec, i, sides, sampled, detectable=detectable) for i, spec in enumerate(specs)],
    }
