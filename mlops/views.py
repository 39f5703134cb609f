"""Rollout API: canary, shadow and rollbacks of a product. One view per operation.

Views parse input with an explicit serializer, call one service or selector and shape the
answer with an output serializer. A bad field answers 400 naming it, an unknown product 404,
a change the current state does not allow (``LifecycleError``) 409. Who and why are recorded as
`mlops.api.changes` says (the reason is optional over the API).
"""

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from mlops import selectors, services
from mlops.api.base import BaseAPIView
from mlops.api.changes import change
from mlops.api.errors import UnknownReference
from mlops.api.inputs import DOES_NOT_EXIST, PercentField, parse, parse_query
from mlops.api.openapi import NO_NUL, error_responses, links
from mlops.choices import ApiCapability
from mlops.models import ModelVersion, RollbackReason

# --- Serializers ------------------------------------------------------------------------------


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(
        max_length=500, trim_whitespace=True, required=False, allow_blank=True, default="",
        help_text="Recorded in the history with who called; when absent, the history says that none was given.",
    )  # fmt: skip


class ModelVersionIdField(serializers.UUIDField):
    """A model version id that must exist (404 naming the field otherwise: `mlops.api.inputs.parse`)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not ModelVersion.objects.filter(pk=value).exists():
            raise serializers.ValidationError("No model version has this id.", code=DOES_NOT_EXIST)
        return value


class CanarySetInput(ReasonInput):
    product = serializers.SlugField(max_length=64)
    canary_model_id = ModelVersionIdField()
    production_model_id = ModelVersionIdField(required=False, allow_null=True)
    canary_percent = PercentField()
    auto_promote = serializers.BooleanField(
        required=False,
        help_text="Let the rollout guard step the canary up the ladder and promote it once it is shown non-inferior. "
        "Absent: as it was (off for a product's first canary).",
    )


class ShadowEnableInput(ReasonInput):
    shadow_model_id = ModelVersionIdField()
    sample_percent = PercentField(required=False, default=100)


class RollbacksQuery(serializers.Serializer):
    product = serializers.SlugField(max_length=64, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=500, required=False, default=100)


class ModelVersionRef(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    version = serializers.CharField()
    status = serializers.CharField()


class CanaryOutput(serializers.Serializer):
    product = serializers.CharField()
    production_model_id = serializers.UUIDField(source="production.pk", allow_null=True, default=None)
    canary_model_id = serializers.UUIDField(source="canary_model.pk", allow_null=True, default=None)
    production_model = ModelVersionRef(source="production", allow_null=True)
    canary_model = ModelVersionRef(allow_null=True)
    canary_percent = serializers.FloatField()
    canary_basis_points = serializers.IntegerField()
    active = serializers.BooleanField(source="canary_active")
    stale = serializers.BooleanField(source="stale_config", help_text="The canary row names a production version that was replaced.")
    started_at = serializers.DateTimeField(
        source="config.started_at",
        allow_null=True,
        default=None,
        help_text="When this canary took its first traffic (a restart after a stop resets it).",
    )
    step_started_at = serializers.DateTimeField(
        source="config.step_started_at", allow_null=True, default=None, help_text="When the canary reached its current share."
    )
    auto_promote = serializers.BooleanField(
        source="config.auto_promote",
        default=False,
        help_text="The rollout guard steps and promotes this canary when it is shown non-inferior.",
    )
    updated_at = serializers.DateTimeField(source="config.updated_at", allow_null=True, default=None, help_text="The row's last change.")
    changed_at = serializers.DateTimeField(source="config.changed_at", allow_null=True, default=None)
    changed_by = serializers.CharField(source="config.changed_by.get_username", allow_null=True, default=None)
    change_reason = serializers.CharField(source="config.change_reason", default="")


class ShadowOutput(serializers.Serializer):
    product = serializers.CharField()
    source = serializers.ChoiceField(choices=[selectors.SOURCE_OVERRIDE, selectors.SOURCE_ENVIRONMENT, selectors.SOURCE_NONE])
    enabled = serializers.BooleanField()
    shadow_model = ModelVersionRef(allow_null=True)
    sample_percent = serializers.FloatField()
    environment_model_id = serializers.CharField(allow_null=True)
    problem = serializers.CharField()
    changed_at = serializers.DateTimeField(source="override.changed_at", allow_null=True, default=None)
    changed_by = serializers.CharField(source="override.changed_by.get_username", allow_null=True, default=None)
    change_reason = serializers.CharField(source="override.change_reason", default="")


class RollbackEventOutput(serializers.Serializer):
    id = serializers.IntegerField()
    product = serializers.CharField()
    model_version = ModelVersionRef()
    production_model = ModelVersionRef(allow_null=True)
    reason = serializers.ChoiceField(choices=RollbackReason.choices)
    canary_percent = serializers.SerializerMethodField()
    measured = serializers.JSONField()
    window_seconds = serializers.IntegerField()
    window_start = serializers.DateTimeField(allow_null=True)
    window_end = serializers.DateTimeField(allow_null=True)
    message = serializers.CharField()
    created_by = serializers.CharField(source="created_by.get_username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()

    def get_canary_percent(self, event) -> float:
        return event.canary_basis_points / 100


# --- Helpers ----------------------------------------------------------------------------------


def _require_product(product: str, *, field: str | None = None) -> None:
    """404 for an unknown product: naming ``field`` when the body named it, not the path."""
    if not selectors.product_exists(product=product):
        if field is not None:
            raise UnknownReference({field: ["No model version of this product is registered."]})
        raise Http404(f"unknown product {product!r}")


def _canary_answer(product: str, code=status.HTTP_200_OK) -> Response:
    return Response(CanaryOutput(selectors.rollout_overview(product=product, rollbacks=0)).data, status=code)


def _shadow_answer(product: str) -> Response:
    return Response(ShadowOutput(selectors.shadow_effective(product=product)).data)


# --- Canary -----------------------------------------------------------------------------------


class CanarySetView(BaseAPIView):
    """POST /v1/canary: start or restart a product's canary at a percentage."""

    api_permission = ApiCapability.MANAGE_ROLLOUT

    @extend_schema(
        request=CanarySetInput,
        responses={201: CanaryOutput, **error_responses(404, 409)},
        extensions=links(
            201,
            {
                f"{name}Canary": (method, f"/v1/canary/{{product}}{suffix}", {"product": "$response.body#/product"})
                for name, method, suffix in (
                    ("Get", "GET", ""),
                    ("Stop", "POST", "/stop"),
                    ("Step", "POST", "/step"),
                    ("Promote", "POST", "/promote"),
                )
            },
        ),
    )
    def post(self, request):
        data = parse(CanarySetInput, request.data)
        _require_product(data["product"], field="product")
        change(
            request,
            services.canary_set,
            product=data["product"],
            canary_model_id=data["canary_model_id"],
            production_model_id=data.get("production_model_id"),
            canary_percent=data["canary_percent"],
            auto_promote=data.get("auto_promote"),
            reason=data["reason"],
        )
        return _canary_answer(data["product"], status.HTTP_201_CREATED)


class CanaryDetailView(BaseAPIView):
    """GET /v1/canary/{product}: production, canary and its share."""

    api_permission = ApiCapability.READ_MODELS

    @extend_schema(responses=CanaryOutput)
    def get(self, request, product: str):
        _require_product(product)
        return _canary_answer(product)


class _CanaryChangeView(BaseAPIView):
    api_permission = ApiCapability.MANAGE_ROLLOUT
    service = None

    @extend_schema(request=ReasonInput, responses={200: CanaryOutput, **error_responses(409)})
    def post(self, request, product: str):
        data = parse(ReasonInput, request.data)
        _require_product(product)
        change(request, type(self).service, product=product, reason=data["reason"])
        return _canary_answer(product)


class CanaryStopView(_CanaryChangeView):
    """POST /v1/canary/{product}/stop: no more canary traffic (the canary model stays on record)."""

    service = staticmethod(services.canary_stop)


class CanaryStepView(_CanaryChangeView):
    """POST /v1/canary/{product}/step: the next rung of the canary ladder."""

    service = staticmethod(services.canary_step)


class CanaryPromoteView(_CanaryChangeView):
    """POST /v1/canary/{product}/promote: the canary becomes production."""

    service = staticmethod(services.canary_promote)


# --- Shadow -----------------------------------------------------------------------------------


class ShadowDetailView(BaseAPIView):
    """GET /v1/shadow/{product}: the effective shadow and where it comes from."""

    api_permission = ApiCapability.READ_MODELS

    @extend_schema(responses=ShadowOutput)
    def get(self, request, product: str):
        _require_product(product)
        return _shadow_answer(product)


class ShadowEnableView(BaseAPIView):
    """POST /v1/shadow/{product}/enable: shadow a sample of the traffic with a model."""

    api_permission = ApiCapability.MANAGE_ROLLOUT

    @extend_schema(
        request=ShadowEnableInput,
        responses={200: ShadowOutput, **error_responses(409)},
        extensions=links(
            200,
            {
                "GetShadow": ("GET", "/v1/shadow/{product}", {"product": "$response.body#/product"}),
                "DisableShadow": ("POST", "/v1/shadow/{product}/disable", {"product": "$response.body#/product"}),
                "ClearShadowOverride": ("DELETE", "/v1/shadow/{product}/override", {"product": "$response.body#/product"}),
            },
        ),
    )
    def post(self, request, product: str):
        data = parse(ShadowEnableInput, request.data)
        _require_product(product)
        change(
            request,
            services.shadow_enable,
            product=product,
            shadow_model_id=data["shadow_model_id"],
            sample_percent=data["sample_percent"],
            reason=data["reason"],
        )
        return _shadow_answer(product)


class ShadowDisableView(BaseAPIView):
    """POST /v1/shadow/{product}/disable: no shadow, whatever the environment default says."""

    api_permission = ApiCapability.MANAGE_ROLLOUT

    @extend_schema(request=ReasonInput, responses={200: ShadowOutput, **error_responses(409)})
    def post(self, request, product: str):
        data = parse(ReasonInput, request.data)
        _require_product(product)
        change(request, services.shadow_disable, product=product, reason=data["reason"])
        return _shadow_answer(product)


class ShadowOverrideView(BaseAPIView):
    """DELETE /v1/shadow/{product}/override: back to the environment default.

    The reason comes in the body or, for clients that send no body with DELETE, as ``?reason=``.
    """

    api_permission = ApiCapability.MANAGE_ROLLOUT

    @extend_schema(
        # Documented as the query parameter alone: OpenAPI cannot say "in the body or in the query",
        # and DELETE bodies have no defined meaning; a body is still read, for older clients.
        request=None,
        parameters=[
            OpenApiParameter(
                "reason",
                {"type": "string", "maxLength": 500, "pattern": NO_NUL},
                required=False,
                description="why (optional: without one the history records that none was given)",
            )
        ],
        responses={200: ShadowOutput, **error_responses(400, 409)},
    )
    def delete(self, request, product: str):
        body = request.data if isinstance(request.data, dict) and request.data else {}
        data = parse(ReasonInput, body or {"reason": request.query_params.get("reason", "")})
        _require_product(product)
        change(request, services.shadow_clear, product=product, reason=data["reason"])
        return _shadow_answer(product)


# --- Rollbacks --------------------------------------------------------------------------------


class RollbackListView(BaseAPIView):
    """GET /v1/rollbacks?product=: rollbacks, newest first (the guard's and people's)."""

    api_permission = ApiCapability.READ_MODELS

    @extend_schema(
        parameters=[RollbacksQuery],
        responses={200: inline_serializer("RollbackList", {"results": RollbackEventOutput(many=True)}), **error_responses(404)},
    )
    def get(self, request):
        query = parse_query(RollbacksQuery, request.query_params)
        if query.get("product"):
            _require_product(query["product"])
        events = selectors.rollback_events(product=query.get("product"))[: query["limit"]]
        return Response({"results": RollbackEventOutput(events, many=True).data})
