"""Everything a dual-model stream does before its first event, through the API's own view.

`DualInferGate` authenticates, rate-limits and validates the stream request exactly as ``POST
/v1/infer`` does; `plan_run` resolves the product's dual models and claims the run id.
"""

import io
import re
import uuid
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.handlers.asgi import ASGIRequest
from rest_framework import exceptions, status
from rest_framework.response import Response

from inference import api, validation
from inference.services import ServiceUnavailable
from inference.streams.dual_models import DualRoute, dual_models
from inference.streams.recorder import recorder
from inference.validation import InvalidInput
from inference.views import InferenceAPIView
from mlops.choices import ApiCapability

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


class RunInProgress(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "run_in_progress"
    default_detail = "A run with this run_id is still streaming; repeat the request when it has finished."


@dataclass
class Plan:
    run_id: str
    event_id: str = ""
    product: str = ""
    features: dict = field(default_factory=dict)
    route: DualRoute | None = None
    rows: tuple[np.ndarray, np.ndarray] | None = None
    replay: list[dict] | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # the API's own (rate-limit) headers


class DualInferGate(InferenceAPIView):
    """Everything before the first event, as the API does it: body size, authentication, rate
    limit, the ``predict`` capability, the envelope and features (400 naming each field).

    Not routed: `DualInferConsumer` calls it with the stream request; success is a 204 with the
    validated `Plan` on the request, any refusal is the API's own JSON error response.
    """

    api_permission = ApiCapability.PREDICT

    def post(self, request):
        body = self.body(request)
        data = api.request_json(body["read_body"], body["content_length"], settings.INFERENCE_MAX_BODY_BYTES)
        run_id = None
        if isinstance(data, dict) and "run_id" in data:
            data = dict(data)
            run_id = data.pop("run_id")
            if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
                raise InvalidInput(
                    {"run_id": ["1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit."]}, "invalid_envelope"
                )
        item = validation.infer_request(data)
        request._request.stream_plan = plan_run(item, run_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


def plan_run(item: validation.InferRequest, run_id: str | None) -> Plan:
    if run_id is not None:
        state, events = recorder.recorded(run_id)
        if state == "running":
            raise RunInProgress()
        if state == "finished":
            return Plan(run_id=run_id, replay=events)
    route, why = dual_models.route(item.product)
    if route is None:
        if why:
            raise ServiceUnavailable("not_ready", f"The dual models of {item.product!r} cannot serve now ({why}).")
        raise InvalidInput({"product": [f"{item.product!r} has no dual-model configuration."]}, "unknown_product")
    fast_row, full_row = validation.feature_rows(item.features, (route.fast, route.full))
    run_id = run_id or uuid.uuid4().hex
    if not recorder.memory.claim(run_id):
        raise RunInProgress()
    return Plan(run_id, item.event_id, item.product, item.features, route, (fast_row, full_row))


_gate_view = DualInferGate.as_view()


def gate(scope: dict, body: bytes) -> tuple[Plan | None, Response | None]:
    """Run `DualInferGate` on the stream request: ``(plan, None)`` or ``(None, error response)``."""
    request = ASGIRequest(scope, io.BytesIO(body))
    # What was read is what counts: a chunked body has no Content-Length, and one cut at the limit is refused for its size.
    request.META["CONTENT_LENGTH"] = str(len(body))
    request.user = scope.get("user") or AnonymousUser()  # session authentication reads it
    if "session" in scope:
        request.session = scope["session"]
    response = _gate_view(request)
    plan = getattr(request, "stream_plan", None)
    if plan is not None and response.status_code == status.HTTP_204_NO_CONTENT:
        extra = [(key.lower(), value) for key, value in response.items() if key.lower().startswith("x-ratelimit")]
        plan.headers = [(key.encode("latin-1"), value.encode("latin-1")) for key, value in extra]
        return plan, None
    if plan is not None and plan.replay is None:  # claimed, then refused (cannot happen today)
        recorder.memory.finish(plan.run_id, [])
    response.render()
    return None, response
