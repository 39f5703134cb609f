"""Input and output shapes of the audit API (parsing only; the work is in services/selectors)."""

from datetime import timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit import records
from audit.models import PredictionLog
from audit.selectors import parse_duration

MAX_OUTCOMES_PER_REQUEST = 10_000


class OutcomeInputSerializer(serializers.Serializer):
    product = serializers.SlugField(max_length=64)
    event_id = serializers.CharField(max_length=200)
    label = serializers.BooleanField()
    prediction_id = serializers.UUIDField(required=False, allow_null=True)
    observed_at = serializers.DateTimeField(required=False)
    source = serializers.CharField(max_length=100, required=False)


@extend_schema_field(OpenApiTypes.STR)
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


@extend_schema_field(OpenApiTypes.STR)
class WindowField(serializers.Field):
    """A duration such as ``1h``, ``24h`` or ``7d``."""

    def to_internal_value(self, data):
        try:
            return parse_duration(str(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return int(value.total_seconds())


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

    class Meta:
        model = PredictionLog
        fields = _api_field_names()
        read_only_fields = fields

    def get_model(self, row) -> str:
        return f"{row.model_version.name}@{row.model_version.version}"
