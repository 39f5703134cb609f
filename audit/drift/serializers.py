"""The answer of ``GET /v1/drift/{product}``, described exactly (output only: the endpoint takes no input)."""

from rest_framework import serializers

from audit.drift.psi import MODERATE, SIGNIFICANT, STABLE
from audit.models import DriftBaselineSource
from mlops.choices import ModelStatus

LEVELS = [STABLE, MODERATE, SIGNIFICANT]


class DriftBaselineOutput(serializers.Serializer):
    source = serializers.ChoiceField(
        choices=DriftBaselineSource.choices,
        help_text="reference: the file pushed with the model; backtest: the logged rows its backtest replayed; "
        "predictions: its first production answers.",
    )
    detail = serializers.CharField(help_text="The file, the backtest or the rows.")
    rows = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class DriftWindowOutput(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    rows = serializers.IntegerField(help_text="The model's logged answers in the window.")
    evaluated_at = serializers.DateTimeField()
    incremental = serializers.BooleanField(help_text="Counted from the previous window (only the rows that entered or left were read).")


class DriftValueOutput(serializers.Serializer):
    psi = serializers.FloatField(allow_null=True, help_text="null: not evaluated yet, or fewer than DRIFT_MIN_ROWS rows in the window.")
    level = serializers.ChoiceField(choices=LEVELS, allow_null=True)


class FeatureDriftOutput(DriftValueOutput):
    name = serializers.CharField()
    monitored = serializers.BooleanField(help_text="false: the log redacts it (or the baseline has no number for it).")
    reason = serializers.CharField(allow_null=True, help_text="Why a feature is not monitored.")


class ModelDriftOutput(serializers.Serializer):
    model_id = serializers.UUIDField()
    model = serializers.CharField(help_text="name@version")
    status = serializers.ChoiceField(choices=[ModelStatus.PRODUCTION, ModelStatus.CANARY])
    baseline = DriftBaselineOutput(allow_null=True, help_text="null until the version has a baseline.")
    window = DriftWindowOutput(allow_null=True, help_text="The latest evaluated window; null before the first.")
    score = DriftValueOutput()
    features = FeatureDriftOutput(many=True, help_text="Monitored features by PSI, highest first, then the others.")


class DriftThresholdsOutput(serializers.Serializer):
    moderate = serializers.FloatField()
    significant = serializers.FloatField()


class ProductDriftOutput(serializers.Serializer):
    product = serializers.CharField()
    window_seconds = serializers.IntegerField()
    interval_seconds = serializers.FloatField()
    thresholds = DriftThresholdsOutput()
    models = ModelDriftOutput(many=True, help_text="The production version, then the active canary.")
