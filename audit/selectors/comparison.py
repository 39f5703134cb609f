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
  available, with the reason.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import FloatField, Q
from django.db.models.functions import Cast
from django.db.models.lookups import GreaterThanOrEqual, LessThan, LessThanOrEqual
from django.utils import timezone

from audit.evidence.comparison import compare, rate_comparison
from audit.evidence.proportions import CONFIDENCE
from audit.selectors.health import Side, answered_rows, model_health, samples
from audit.selectors.log import HISTOGRAM_BINS
from audit.selectors.segments import FEATURE, feature_value, segment_bins, segment_specs
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


def _sides_compared(sides: tuple[Side, Side], *, since: datetime, until: datetime, segment: Q | None, detectable: float) -> dict:
    production, canary = (model_health(side, since=since, until=until, segment=segment) for side in sides)
    sample_production, sample_canary = (samples(side, since=since, until=until, segment=segment) for side in sides)
    return {
        "production": production,
        "canary": canary,
        **evidence(production, canary, sample_production, sample_canary, detectable=detectable),
    }


# --- segments ---------------------------------------------------------------------------------


def _between(value, low: float | None, high: float | None, *, closed: bool = False) -> Q:
    """``low <= value < high`` (``<=`` when ``closed``); an open end when a bound is None: `Bins.index` in SQL."""
    conditions = [] if low is None else [GreaterThanOrEqual(value, low)]
    if high is not None:
        conditions.append((LessThanOrEqual if closed else LessThan)(value, high))
    return Q(*conditions)


def segmentation(spec: dict, sides: tuple[Side, Side], *, since: datetime, until: datetime, detectable: float) -> dict:
    """One configured segmentation: its bins, each with both sides' health and the evidence."""
    bins = segment_bins(spec, answered_rows(sides[0], since=since, until=until).order_by("-created_at"))
    value = feature_value(bins.feature) if bins.kind == FEATURE else Cast("score", FloatField())
    result = {"kind": bins.kind, "feature": bins.feature, "available": bins.available, "reason": bins.reason, "bins": []}
    for index, ((low, high), text) in enumerate(zip(bins.bounds, bins.labels(), strict=True)):
        segment = _between(value, low, high, closed=bins.closed(index))
        result["bins"].append(
            {
                "label": text,
                "low": low,
                "high": high,
                **_sides_compared(sides, since=since, until=until, segment=segment, detectable=detectable),
            }
        )
    return result


# --- the comparison ---------------------------------------------------------------------------


def canary_comparison(*, product: str, window: timedelta, now: datetime | None = None) -> dict:
    """Canary against production over the last ``window``: the figures of the comparison page and API."""
    until = now or timezone.now()
    since = until - window
    detectable = settings.EVIDENCE_DETECTABLE_DIFFERENCE
    sides = comparison_sides(product)
    return {
        "product": product,
        "window_seconds": int(window.total_seconds()),
        "since": since,
        "until": until,
        "confidence": CONFIDENCE,
        "detectable_difference": detectable,
        "histogram_edges": [round(i / HISTOGRAM_BINS, 4) for i in range(HISTOGRAM_BINS + 1)],
        **_sides_compared(sides, since=since, until=until, segment=None, detectable=detectable),
        "segments": [segmentation(spec, sides, since=since, until=until, detectable=detectable) for spec in segment_specs(product)],
    }
