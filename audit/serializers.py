"""Input and output shapes of the audit API (parsing only; the work is in services/selectors)."""

from datetime import timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit import records
from audit.models import DiffClass, PredictionLog
from audit.selectors import MAX_WINDOW, parse_duration
from audit.selectors.comparison import RATE_NAMES
from mlops.api.openapi import PY_WHITESPACE
from mlops.choices import ModelRole

MAX_OUTCOMES_PER_REQUEST = 10_000


def _one_to(n: int) -> str:
    """A regex of the decimal numbers 1..n (no leading zeros), e.g. 1..366 for days."""
    digits = str(n)
    alternatives = [rf"[1-9]\d{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    for index, digit in enumerate(digits):
        low = 1 if index == 0 else 0
        if int(digit) > low:
            alternatives.append(rf"{digits[:index]}[{low}-{int(digit) - 1}]\d{{{len(digits) - index - 1}}}")
    alternatives.append(digits)
    return "|".join(alternatives)


# What `audit.selectors.parse_duration` takes: a whole number of s, m, h or d, up to MAX_WINDOW, with
# whitespace around (trimmed): spelled out so that the schema refuses exactly what the server refuses.
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_PATTERN = (
    f"^[{PY_WHITESPACE}]*0*(?:"
    + "|".join(f"(?:{_one_to(int(MAX_WINDOW.total_seconds()) // size)}){unit}" for unit, size in _SECONDS.items())
    + f")[{PY_WHITESPACE}]*$"
)


class OutcomeInputSerializer(serializers.Serializer):
    product = serializers.SlugField(max_length=64)
    event_id = serializers.CharField(max_length=200)
    label = serializers.BooleanField()
    prediction_id = serializers.UUIDField(required=False, allow_null=True)
    observed_at = serializers.DateTimeField(required=False)
    source = serializers.CharField(max_length=100, required=False)


@extend_schema_field({"anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, {"type": "string", "format": "date-time"}]})
class SinceField(serializers.Field):
    """An ISO 8601 datetime, or a duration back from now (``24h``, ``7d``, ``30m``)."""

    def to_internal_value(self, data):
        text = str(data).strip()
        try:
            return timezone.now() - parse_duration(text)
        except ValueError:
            pass
        try:
            value = parse_datetime(text)
        except ValueError:
            value = None
        if value is None:
            raise serializers.ValidationError("Use an ISO 8601 datetime or a duration such as 24h or 7d.")
        return value if timezone.is_aware(value) else timezone.make_aware(value, timezone.UTC)

    def to_representation(self, value):
        return value.isoformat()


@extend_schema_field({"type": "string", "pattern": DURATION_PATTERN})
class WindowField(serializers.Field):
    """A duration such as ``1h``, ``24h`` or ``7d``."""

    def to_internal_value(self, data):
        try:
            return parse_duration(str(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return f"{int(value.total_seconds())}s"  # as it is written in a query (the schema's default)


class SummaryQuerySerializer(serializers.Serializer):
    product = serializers.SlugField(max_length=64, required=False)
    since = SinceField(required=False)

    def validate(self, attrs):
        attrs.setdefault("since", timezone.now() - timedelta(hours=24))
        return attrs


class RecentQuerySerializer(serializers.Serializer):
    product = serializers.SlugField(max_length=64, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=500, required=False)
    cursor = serializers.CharField(required=False)


class CompareQuerySerializer(serializers.Serializer):
    product = serializers.SlugField(max_length=64)
    window = WindowField(required=False, default=timedelta(hours=24))


def _api_field_names() -> list[str]:
    """`records.API` under the model's field names (``model_version``, not ``model_version_id``:
    a relation renders as the related id), with the version's label beside its id."""
    names = {field.attname: field.name for field in PredictionLog._meta.concrete_fields}
    fields = []
    for key in records.API:
        fields.append(names[key])
        if key == "model_version_id":
            fields.append("model")
    return fields


class PredictionLogSerializer(serializers.ModelSerializer):
    model = serializers.SerializerMethodField()
    # Blank until a shadow ran; DRF's read-only field loses the model's blank=True, so the schema would forbid "".
    diff_class = serializers.ChoiceField(choices=DiffClass.choices, allow_blank=True, read_only=True)

    class Meta:
        model = PredictionLog
        fields = _api_field_names()
        read_only_fields = fields

    def get_model(self, row) -> str:
        return f"{row.model_version.name}@{row.model_version.version}"


# --- GET /v1/audit/compare: the output, field for field (audit.selectors.comparison) ----------
# Output only: the view renders `canary_comparison` through CompareSerializer, so the schema
# drf-spectacular derives from these classes is exactly what the endpoint answers.


def _number(**options) -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, **options)


class RateSerializer(serializers.Serializer):
    """``count`` of ``total``, its value and 95% Wilson interval (null when ``total`` is 0)."""

    count = serializers.IntegerField()
    total = serializers.IntegerField()
    value = _number()
    low = _number()
    high = _number()


class VersionLabelSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    model = serializers.CharField(help_text="name@version")


class LatencySerializer(serializers.Serializer):
    p50 = _number()
    p95 = _number()
    p99 = _number()


class DecisionMixSerializer(serializers.Serializer):
    allow = RateSerializer()
    review = RateSerializer()
    block = RateSerializer()


class ScoreSerializer(serializers.Serializer):
    mean = _number()
    histogram = serializers.ListField(child=serializers.IntegerField(), help_text="Counts per bin of histogram_edges.")


class OutcomesSerializer(serializers.Serializer):
    labelled = serializers.IntegerField()
    negatives = serializers.IntegerField()
    positives = serializers.IntegerField()
    false_positives = serializers.IntegerField()
    true_positives = serializers.IntegerField()
    false_positive_rate = RateSerializer()
    true_positive_rate = RateSerializer()


class DiffClassesSerializer(serializers.Serializer):
    minimal = serializers.IntegerField()
    moderate = serializers.IntegerField()
    significant = serializers.IntegerField()


class ShadowSerializer(serializers.Serializer):
    runs = serializers.IntegerField()
    agreement_rate = RateSerializer()
    significant_rate = RateSerializer()
    diff_classes = DiffClassesSerializer()
    mean_score_diff = _number()


class HealthSerializer(serializers.Serializer):
    """`audit.selectors.health.model_health`: one side over the window."""

    role = serializers.ChoiceField(choices=ModelRole.choices)
    model_versions = VersionLabelSerializer(many=True)
    requests = serializers.IntegerField()
    answered = serializers.IntegerField()
    failovers = serializers.IntegerField(allow_null=True, help_text="Null for a side that cannot fail over (production).")
    error_rate = RateSerializer(allow_null=True)
    latency_ms = LatencySerializer()
    cache_hit_rate = RateSerializer()
    decision_mix = DecisionMixSerializer()
    score = ScoreSerializer()
    outcomes = OutcomesSerializer()
    shadow = ShadowSerializer()


class RateComparisonSerializer(serializers.Serializer):
    """Canary (``a``) minus production (``b``): Newcombe 95% interval, Fisher p-value, what is missing."""

    a = RateSerializer()
    b = RateSerializer()
    difference = _number()
    low = _number()
    high = _number()
    p_value = _number()
    more_needed = serializers.IntegerField(
        allow_null=True, help_text="More observations the canary needs to detect detectable_difference (0: enough)."
    )
    unit = serializers.CharField(help_text="What the rate's denominators count.")


class DistributionComparisonSerializer(serializers.Serializer):
    n = serializers.ListField(child=serializers.IntegerField(), min_length=2, max_length=2, help_text="[canary, production]")
    mann_whitney_p = _number()
    superiority = _number(help_text="P(canary > production) + P(equal)/2; 0.5: neither tends higher.")
    ks_statistic = _number()
    ks_p = _number()


class RatioSerializer(serializers.Serializer):
    ratio = _number()
    low = _number()
    high = _number()


class LatencyComparisonSerializer(DistributionComparisonSerializer):
    p95_ratio = RatioSerializer()


def _serializer(name: str, doc: str, fields: dict) -> type[serializers.Serializer]:
    """A serializer class with these fields (one per figure of the comparison, named as the selector names them)."""
    return type(name, (serializers.Serializer,), {"__doc__": doc, "__module__": __name__, **fields})


EvidenceSerializer = _serializer(
    "EvidenceSerializer",
    "Canary against production: every rate, the score and latency distributions.",
    {
        **{name: RateComparisonSerializer() for name in RATE_NAMES},
        "score": DistributionComparisonSerializer(),
        "latency": LatencyComparisonSerializer(),
    },
)
VerdictsSerializer = _serializer(
    "VerdictsSerializer",
    "One plain sentence per figure of the evidence.",
    {name: serializers.CharField() for name in (*RATE_NAMES, "score", "latency", "p95_ratio")},
)


class SidesComparedSerializer(serializers.Serializer):
    production = HealthSerializer()
    canary = HealthSerializer()
    evidence = EvidenceSerializer()
    verdicts = VerdictsSerializer()


class SegmentBinSerializer(SidesComparedSerializer):
    label = serializers.CharField()
    low = _number(help_text="Null: open below.")
    high = _number(help_text="Null: open above.")


class SegmentationSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["feature", "score_band"], help_text="A logged feature in quantile bins, or score bands.")
    feature = serializers.CharField(allow_null=True)
    available = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True, help_text="Why the segmentation is not available.")
    bins = SegmentBinSerializer(many=True)


class CompareSerializer(SidesComparedSerializer):
    product = serializers.CharField()
    window_seconds = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    confidence = serializers.FloatField()
    detectable_difference = serializers.FloatField()
    histogram_edges = serializers.ListField(child=serializers.FloatField())
    segments = SegmentationSerializer(many=True)
