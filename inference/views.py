"""The inference API: thin views that read the body, call a service and shape the answer.

Every view derives from `mlops.api.base.BaseAPIView` (fixed orjson parsing and rendering, the
platform's authentication and permissions). Bodies are read here rather than through
``request.data`` so that an oversized body is refused from its Content-Length before a byte
is read or parsed.
"""

import uuid

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from inference import metrics, selectors, services, validation
from inference import serializers as schema
from inference.validation import InvalidInput
from mlops.api.base import BaseAPIView, principal_of
from mlops.api.openapi import error_responses
from mlops.choices import ApiCapability


class ServiceUnavailableError(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"
    default_detail = "The service cannot answer now; retry shortly."


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."


class InferenceAPIView(BaseAPIView):
    """Maps the serving path's errors onto the platform's error body (400 / 413 / 503, never 500)."""

    def handle_exception(self, exc):
        if isinstance(exc, InvalidInput):
            for reason in exc.reasons:
                metrics.INVALID.labels(reason).inc()
            if exc.reasons == {"body_too_large"}:
                exc = BodyTooLarge(" ".join(exc.fields["body"]))
            else:
                exc = exceptions.ValidationError(exc.fields)
        elif isinstance(exc, services.ServiceUnavailable):
            exc = ServiceUnavailableError(str(exc), code=exc.code)
        return super().handle_exception(exc)

    @staticmethod
    def read_json(request, limit: int):
        validation.check_body_size(request.META.get("CONTENT_LENGTH"), limit)
        stream = request.stream
        return validation.parse_json(stream.read(limit + 1) if stream is not None else b"", limit)


class InferView(InferenceAPIView):
    """``POST /v1/infer``: one prediction."""

    api_permission = ApiCapability.PREDICT

    @extend_schema(request=schema.InferRequestSerializer, responses={200: schema.PredictionSerializer, **error_responses(503)})
    def post(self, request):
        data = self.read_json(request, settings.INFERENCE_MAX_BODY_BYTES)
        item = validation.infer_request(data)
        prediction = services.predict(
            event_id=item.event_id,
            product=item.product,
            features=item.features,
            request_id=request.headers.get("X-Request-ID", "")[:64],
            client=principal_of(request).owner,
        )
        return Response(prediction.as_response())


class InferBatchView(InferenceAPIView):
    """``POST /v1/infer/batch``: ``{"items": [<infer request>, ...]}`` -> ``{"items": [<prediction>, ...]}``."""

    api_permission = ApiCapability.PREDICT

    @extend_schema(request=schema.BatchRequestSerializer, responses={200: schema.BatchResponseSerializer, **error_responses(503)})
    def post(self, request):
        data = self.read_json(request, settings.INFERENCE_BATCH_MAX_BODY_BYTES)
        items, problems = validation.infer_batch_request(data, settings.INFERENCE_BATCH_MAX_ITEMS)
        predictions = services.predict_batch(
            items=items, problems=problems, request_id=request.headers.get("X-Request-ID", "")[:64], client=principal_of(request).owner
        )
        return Response({"items": [prediction.as_response() for prediction in predictions]})


class PredictionDetailView(InferenceAPIView):
    """``GET /v1/infer/<prediction_id>``: a recorded prediction, even before its log batch is written."""

    api_permission = ApiCapability.READ_PREDICTIONS

    @extend_schema(responses=schema.RecordedPredictionSerializer)
    def get(self, request, prediction_id: str):
        try:
            key = uuid.UUID(prediction_id)
        except ValueError:
            raise exceptions.NotFound("No prediction has this id.") from None
        caller = principal_of(request)
        # Inference clients read their own predictions; auditors (and internal services) read any.
        record = selectors.prediction_get(
            prediction_id=key, client=None if caller.has_capability(ApiCapability.READ_AUDIT) else caller.owner
        )
        if record is None:
            raise exceptions.NotFound("No prediction has this id.")
        return Response(record)


class ModelsView(InferenceAPIView):
    """``GET /v1/models``: the models this process serves, and the versions it refused."""

    api_permission = ApiCapability.READ_MODELS

    @extend_schema(responses=schema.MODELS_RESPONSE)
    def get(self, request):
        return Response(selectors.serving_models())


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
        return Response(body, status=status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE)
