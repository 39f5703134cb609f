"""Input and output shapes of the audit API (parsing only; the work is in services/selectors)."""

from datetime import timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit import records
from audit.models import DiffClass, PredictionLog
from audit.selectors import MAX_WINDOW, parse_duration
from mlops.api.openapi import PY_WHITESPACE

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
