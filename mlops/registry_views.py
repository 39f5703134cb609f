"""Registry API: model versions over HTTP, for the pipelines that train them and the people who
roll them out. One view per operation, the same services as the admin's actions.

- ``POST /v1/models`` (multipart: the ONNX file and its product, name, version, threshold,
  description, and optionally a drift ``reference`` file): stored in the model store, checksummed and registered as a candidate, as
  ``manage.py push_model`` does. The path's ``GET`` lists what a serving process serves, so the
  view of that path lives with the serving path (`inference.views.ModelsView`) and takes its
  ``post`` from `ModelRegistration` here.
- ``GET /v1/models/{id}``: one version as the registry records it.
- ``POST /v1/models/{id}/promote`` ``{"target": "validated" | "production" | "archived"}``.
- ``POST /v1/models/{product}/rollback``: production back to its previous version.

Who and why are recorded as `mlops.api.changes` says; a refused transition answers 409.
"""

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.response import Response

from mlops import selectors, services
from mlops.api.base import BaseAPIView
from mlops.api.changes import change
from mlops.api.content import UploadNegotiation
from mlops.api.errors import Unprocessable
from mlops.api.inputs import parse
from mlops.api.openapi import error_responses
from mlops.artifacts.onnx_schema import SchemaError, describe_inputs
from mlops.artifacts.reference import ReferenceInvalid
from mlops.artifacts.stores import StoreError, store_from_url
from mlops.choices import ApiCapability, ModelStatus
from mlops.models import ModelVersion
from mlops.services.lifecycle import NAME_PATTERN, PRODUCT_PATTERN
from mlops.views import ReasonInput

# --- Serializers ------------------------------------------------------------------------------


class FeatureOutput(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="The graph's element type: float, double, int64 or int32.")


class TensorOutput(FeatureOutput):
    shape = serializers.ListField(
        child=serializers.IntegerField(allow_null=True), help_text="null for a dimension of any size (the batch)."
    )


class InputSchemaOutput(serializers.Serializer):
    layout = serializers.ChoiceField(
        choices=["tensor", "columns"], help_text="tensor: one [batch, n] input; columns: one [batch, 1] input per feature."
    )
    features = FeatureOutput(many=True, help_text="What POST /v1/infer takes in `features`, in the graph's order.")
    tensors = TensorOutput(many=True)


@extend_schema_field(InputSchemaOutput)
class InputSchemaField(serializers.Field):
    """A version's stored input schema, described for clients (`describe_inputs`)."""

    def to_representation(self, value):
        return describe_inputs(value)


class ModelVersionOutput(serializers.Serializer):
    model_id = serializers.UUIDField(source="pk")
    product = serializers.CharField()
    name = serializers.CharField()
    version = serializers.CharField()
    status = serializers.ChoiceField(choices=ModelStatus.choices)
    threshold = serializers.FloatField(help_text="Score at or above which the decision is block.")
    description = serializers.CharField()
    input_schema = InputSchemaField()
    artifact_uri = serializers.CharField()
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    promoted_at = serializers.DateTimeField(allow_null=True)
    rolled_back_at = serializers.DateTimeField(allow_null=True)
    changed_at = serializers.DateTimeField(allow_null=True)
    changed_by = serializers.CharField(source="changed_by.get_username", allow_null=True, default=None)
    change_reason = serializers.CharField()


class ModelRegisterInput(ReasonInput):
    # An empty file is taken here and refused as no servable model (422), as any other file that is none.
    file = serializers.FileField(allow_empty_file=True, help_text="The ONNX model.")
    product = serializers.RegexField(PRODUCT_PATTERN, help_text="Lower-case letters, digits, '-' or '_' (at most 64).")
    name = serializers.RegexField(NAME_PATTERN, help_text="Letters, digits, '.', '-' or '_' (at most 100).")
    version = serializers.RegexField(NAME_PATTERN, help_text="Letters, digits, '.', '-' or '_' (at most 100).")
    threshold = serializers.FloatField(min_value=0, max_value=1, default=0.5, help_text="Score at or above which the decision is block.")
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    reference = serializers.FileField(
        required=False,
        allow_empty_file=True,  # like the model file: an empty one is refused as no rows of the features (422)
        help_text="Optional drift reference rows: a .csv (header of feature names) or .parquet file with a column per feature.",
    )


class PromoteInput(ReasonInput):
    target = serializers.ChoiceField(
        choices=[ModelStatus.VALIDATED, ModelStatus.PRODUCTION, ModelStatus.ARCHIVED],
        help_text="validated: a candidate passed its checks; production: the product's production version "
        "(the old one is archived); archived: retired (its canary and shadow roles stop).",
    )


PROMOTIONS = {
    ModelStatus.VALIDATED: services.model_version_validate,
    ModelStatus.PRODUCTION: services.model_version_promote,
    ModelStatus.ARCHIVED: services.model_version_archive,
}


class RollbackOutput(serializers.Serializer):
    product = serializers.CharField()
    rolled_back = ModelVersionOutput(source="model_version", help_text="The version that was production, now archived.")
    production = ModelVersionOutput(source="production_model", help_text="The restored production version.")
    rollback_id = serializers.IntegerField(source="pk", help_text="The record in GET /v1/rollbacks.")


def _version(model_version_id) -> ModelVersion:
    model_version = selectors.model_version_get(model_version_id=model_version_id)
    if model_version is None:
        raise Http404(f"no model version {model_version_id}")
    return model_version


# --- Views ------------------------------------------------------------------------------------


class StoreUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "store_unavailable"
    default_detail = "The model store cannot be reached; retry shortly."


class ModelRegistration:
    """``POST /v1/models``: register an ONNX file as a new candidate version (a mixin of the path's view)."""

    parser_classes = [parsers.MultiPartParser]
    content_negotiation_class = UploadNegotiation
    max_body_setting = "MODEL_UPLOAD_MAX_BYTES"

    @extend_schema(
        request={"multipart/form-data": ModelRegisterInput},
        responses={201: ModelVersionOutput, **error_responses(409, 415, 422, 503)},
        description="Store the file in the model store, checksum it and register it as a candidate of the product.",
    )
    def post(self, request):
        data = parse(ModelRegisterInput, request.data, json=False)  # a form: every value is text
        upload = data.pop("file")
        try:
            registered = change(request, services.model_upload, upload=upload, store=store_from_url(), **data)
        except ReferenceInvalid as exc:
            raise Unprocessable(
                {"reference": [str(exc)]}, detail="The reference file is not rows of the model's features.", code="invalid_reference"
            ) from None
        except SchemaError as exc:
            raise Unprocessable(
                {"file": [str(exc)]}, detail="The file is not an ONNX model this platform can serve.", code="unservable_model"
            ) from None
        except StoreError as exc:
            raise StoreUnavailable(f"The model store failed: {exc}") from None
        return Response(
            ModelVersionOutput(registered).data, status=status.HTTP_201_CREATED, headers={"Location": f"/v1/models/{registered.pk}"}
        )


class ModelVersionDetailView(BaseAPIView):
    """``GET /v1/models/{id}``: one model version as the registry records it, with its input schema."""

    api_permission = ApiCapability.READ_MODELS

    @extend_schema(responses=ModelVersionOutput)
    def get(self, request, model_version_id):
        return Response(ModelVersionOutput(_version(model_version_id)).data)


class ModelVersionPromoteView(BaseAPIView):
    """``POST /v1/models/{id}/promote``: move a version to ``target`` (validated, production or archived)."""

    api_permission = ApiCapability.MANAGE_MODELS

    @extend_schema(request=PromoteInput, responses={200: ModelVersionOutput, **error_responses(409)})
    def post(self, request, model_version_id):
        data = parse(PromoteInput, request.data)
        _version(model_version_id)
        change(request, PROMOTIONS[data["target"]], model_version_id=model_version_id, reason=data["reason"])
        return Response(ModelVersionOutput(_version(model_version_id)).data)


class ProductRollbackView(BaseAPIView):
    """``POST /v1/models/{product}/rollback``: the product's production goes back to its previous version."""

    api_permission = ApiCapability.MANAGE_MODELS

    @extend_schema(request=ReasonInput, responses={200: RollbackOutput, **error_responses(409)})
    def post(self, request, product: str):
        data = parse(ReasonInput, request.data)
        if not selectors.product_exists(product=product):
            raise Http404(f"unknown product {product!r}")
        event = change(request, services.production_rollback, product=product, reason=data["reason"])
        return Response(RollbackOutput(event).data)
