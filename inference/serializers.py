"""The inference API's request and response shapes, for the OpenAPI schema (drf-spectacular).

Requests are validated by `inference.validation` (plain functions: a DRF serializer over 30
features costs more than the model run, and the features depend on the product's schema in
the serving snapshot); these serializers describe the same shapes for the documentation and
are never run on the hot path.
"""

from datetime import timedelta

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.serializers import HealthSerializer, WindowField
from mlops.choices import Decision, ModelRole, ModelStatus
from mlops.registry_views import InputSchemaOutput


@extend_schema_field({"type": "object", "additionalProperties": {"type": "number"}, "example": {"mean_radius": 17.99}})
class FeaturesField(serializers.DictField):
    """Feature name -> finite number; exactly the product's features."""


class InferRequestSerializer(serializers.Serializer):
    event_id = serializers.CharField(max_length=200, help_text="The caller's id of the event; it decides the canary route.")
    product = serializers.SlugField(max_length=64)
    features = FeaturesField(required=False, help_text="Or, as in seed 001, payload.features.")
    payload = serializers.DictField(
        required=False, help_text='The event, seed 001\'s form: {"features": {...}, ...}; its features are scored, the rest is not used.'
    )


class ExplanationSerializer(serializers.Serializer):
    feature = serializers.CharField()
    importance = serializers.FloatField(help_text="The feature's share of the row's whole absolute contribution, 0 to 1.")
    value = serializers.FloatField()
    contribution = serializers.FloatField(help_text="Positive pushes the score towards block.")


class PredictionSerializer(serializers.Serializer):
    prediction_id = serializers.UUIDField()
    model_id = serializers.UUIDField()
    model_version = serializers.CharField()
    model_role = serializers.ChoiceField(choices=ModelRole.choices, help_text="production or canary (shadow rows only when read back).")
    score = serializers.FloatField()
    decision = serializers.ChoiceField(choices=Decision.choices)
    explain_summary = ExplanationSerializer(many=True, help_text="At most 5 features, largest contribution first.")
    latency_ms = serializers.FloatField()
    cached = serializers.BooleanField()


class RecordedPredictionSerializer(PredictionSerializer):
    event_id = serializers.CharField()
    product = serializers.CharField()
    threshold = serializers.FloatField()
    fallback_from = serializers.UUIDField(allow_null=True, help_text="The canary that failed, when production answered instead.")
    fallback_reason = serializers.CharField(allow_blank=True)
    primary_prediction_id = serializers.UUIDField(allow_null=True, help_text="Shadow rows: the prediction it shadowed.")
    created_at = serializers.DateTimeField()


class BatchRequestSerializer(serializers.Serializer):
    # A ListField, as drf-spectacular documents its lengths (minItems, maxItems) and not a ListSerializer's.
    items = serializers.ListField(child=InferRequestSerializer(), min_length=1, max_length=settings.INFERENCE_BATCH_MAX_ITEMS)


class BatchResponseSerializer(serializers.Serializer):
    items = PredictionSerializer(many=True)


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField()


class ServingModelSerializer(serializers.Serializer):
    model_id = serializers.UUIDField()
    product = serializers.CharField()
    name = serializers.CharField()
    version = serializers.CharField()
    role = serializers.ChoiceField(choices=ModelRole.choices)
    threshold = serializers.FloatField()
    explain_method = serializers.CharField()
    loaded_at = serializers.DateTimeField()
    input_schema = InputSchemaOutput(help_text="The features POST /v1/infer takes for this model.")
    basis_points = serializers.IntegerField(required=False, help_text="Canary and shadow: their share of the traffic (1/100 %).")


class RefusedModelSerializer(serializers.Serializer):
    model_id = serializers.UUIDField()
    product = serializers.CharField()
    model = serializers.CharField()
    reason = serializers.CharField()
    at = serializers.DateTimeField()


class ServingModelsSerializer(serializers.Serializer):
    ready = serializers.BooleanField()
    generation = serializers.IntegerField(allow_null=True)
    models = ServingModelSerializer(many=True)
    total = serializers.IntegerField(help_text="How many models this process serves.")
    refused = RefusedModelSerializer(many=True, help_text="Versions the registry names that this process refused to load, and why.")


class ModelHealthQuerySerializer(serializers.Serializer):
    window = WindowField(required=False, default=timedelta(hours=1))


class ServingCopySerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ModelRole.choices, help_text="The role this process serves the version in.")
    loaded_at = serializers.DateTimeField(help_text="When this process loaded it.")
    warm_up_ms = serializers.FloatField(help_text="Its warm-up (a run and an explanation of a synthetic row), timed.")


class ModelHealthSerializer(serializers.Serializer):
    """`inference.selectors.model_version_health`: ``GET /v1/models/{id}/health``."""

    model_id = serializers.UUIDField()
    product = serializers.SlugField()
    model = serializers.CharField(help_text="name@version")
    status = serializers.ChoiceField(choices=ModelStatus.choices)
    window_seconds = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    roles = HealthSerializer(many=True, help_text="Per role the version played in the window (none: no traffic).")
    loaded_at = serializers.DateTimeField(allow_null=True, help_text="When a process last downloaded and verified the artifact.")
    serving = ServingCopySerializer(allow_null=True, help_text="This process's copy; null when it does not serve the version.")
