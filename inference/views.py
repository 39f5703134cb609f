"""The inference API: thin views that read the body, call a service and shape the answer.

Every view derives from `mlops.api.base.BaseAPIView` (fixed orjson parsing and rendering, the
platform's authentication and permissions). Bodies are read here rather than through
``request.data`` so that an oversized body is refused from its Content-Length before a byte
is read or parsed.
"""

from django.http import Http404
from django.utils.log import log_response
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from inference import api, selectors
from inference import serializers as schema
from inference.errors import as_api_exception
from mlops import selectors as registry_selectors
from mlops.api import inputs
from mlops.api.base import BaseAPIView, principal_of
from mlops.api.openapi import error_responses, links
from mlops.choices import ApiCapability
from mlops.registry_views import ModelRegistration


class InferenceAPIView(BaseAPIView):
    """Maps the serving path's errors onto the platform's error body (400 / 413 / 503, never 500).

    OPTIONS answers 405, as on the hot lane (`inference.lane`): no browser calls these across
    origins, and DRF's metadata answer would only describe the views to anyone who asks.
    """

    metadata_class = None

    @property
    def allowed_methods(self):
        return [method for method in super().allowed_methods if method != "OPTIONS"]

    def handle_exception(self, exc):
        return super().handle_exception(as_api_exception(exc))

    @staticmethod
    def body(request) -> dict:
        """What `inference.api` takes of the request: its body reader, announced length, id and caller."""
        stream = request.stream
        return {
            "read_body": lambda limit: stream.read(limit + 1) if stream is not None else b"",
            "content_length": request.META.get("CONTENT_LENGTH"),
            "request_id": request.headers.get("X-Request-ID", ""),
            "caller": principal_of(request),
        }


class InferView(InferenceAPIView):
    """``POST /v1/infer``: one prediction."""

    api_permission = ApiCapability.PREDICT

    @extend_schema(
        request=schema.InferRequestSerializer,
        responses={200: schema.PredictionSerializer, **error_responses(422, 503)},
        extensions=links(200, {"GetPrediction": ("GET", "/v1/infer/{prediction_id}", {"prediction_id": "$response.body#/prediction_id"})}),
    )
    def post(self, request):
        return Response(api.infer(**self.body(request)))


class InferBatchView(InferenceAPIView):
    """``POST /v1/infer/batch``: ``{"items": [<infer request>, ...]}`` -> ``{"items": [<prediction>, ...]}``."""

    api_permission = ApiCapability.PREDICT

    @extend_schema(request=schema.BatchRequestSerializer, responses={200: schema.BatchResponseSerializer, **error_responses(422, 503)})
    def post(self, request):
        return Response(api.infer_batch(**self.body(request)))


class PredictionDetailView(InferenceAPIView):
    """``GET /v1/infer/<prediction_id>``: a recorded prediction, even before its log batch is written."""

    api_permission = ApiCapability.READ_PREDICTIONS

    @extend_schema(
        # Any string reaches the view; one that is no UUID names no prediction (404), like an unknown one.
        parameters=[OpenApiParameter("prediction_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses=schema.RecordedPredictionSerializer,
    )
    def get(self, request, prediction_id: str):
        return Response(api.recorded_prediction(prediction_id, caller=principal_of(request)))


class ModelsView(ModelRegistration, InferenceAPIView):
    """``GET /v1/models``: the models this process serves, and the versions it refused.
    ``POST /v1/models``: a new version registered (`mlops.registry_views.ModelRegistration`)."""

    api_permission = {"GET": ApiCapability.READ_MODELS, "POST": ApiCapability.MANAGE_MODELS}

    @extend_schema(operation_id="models_list", responses=schema.ServingModelsSerializer)
    def get(self, request):
        return Response(selectors.serving_models())


class ModelHealthView(InferenceAPIView):
    """``GET /v1/models/{id}/health?window=1h``: how a version did over the window, per role it played
    (the log's one definition of health, as on the comparison page), and how this process loaded it."""

    api_permission = ApiCapability.READ_MODELS

    @extend_schema(parameters=[schema.ModelHealthQuerySerializer], responses={200: schema.ModelHealthSerializer, **error_responses(404)})
    def get(self, request, model_version_id):
        query = inputs.parse_query(schema.ModelHealthQuerySerializer, request.query_params)
        model_version = registry_selectors.model_version_get(model_version_id=model_version_id)
        if model_version is None:
            raise Http404(f"no model version {model_version_id}")
        return Response(schema.ModelHealthSerializer(selectors.model_version_health(model_version=model_version, **query)).data)


class HealthView(InferenceAPIView):
    """``GET /healthz``: 200 while the process runs."""

    api_permission = None  # public: probes carry no credentials

    @extend_schema(responses=schema.StatusSerializer)
    def get(self, request):
        return Response({"status": "ok"})


class ReadyView(InferenceAPIView):
    """``GET /readyz``: 503 until every product's production model is loaded and warmed."""

    api_permission = None  # public: probes carry no credentials

    @extend_schema(responses={200: schema.StatusSerializer, 503: schema.StatusSerializer})
    def get(self, request):
        ready, body = selectors.readiness()
        if ready:
            return Response(body)
        response = Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        # Not ready is this probe's expected answer while the models load, not a server error:
        # one INFO line here, and Django's request handler, seeing it logged, adds no ERROR.
        log_response(
            "Not ready yet (%s): %s",
            body["status"],
            ", ".join(body.get("missing", [])) or "the models",
            response=response,
            request=request,
            level="info",
        )
        return response
