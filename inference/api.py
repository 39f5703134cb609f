"""What each hot endpoint does once its caller is known and admitted: the request body in, the
answer's JSON out. Both HTTP lanes (the DRF views in `inference.views` and `inference.lane`) call
these, so the two cannot validate or answer differently; each lane only adds its own transport.

Errors are raised as the serving path's (`InvalidInput`, `ServiceUnavailable`) or DRF's
exceptions; `inference.errors.as_api_exception` and `mlops.api.errors.api_error` turn them into
the platform's error answer.
"""

import uuid
from collections.abc import Callable

from django.conf import settings
from rest_framework import exceptions

from inference import selectors, services, validation
from mlops.choices import ApiCapability
from mlops.security.authentication import Principal

REQUEST_ID_MAX_LENGTH = 64


# A lane's body reader: given the endpoint's limit, at most ``limit + 1`` bytes of the body (enough
# to tell that a body sent without Content-Length is too large). Called only once the announced
# length has passed, so that an oversized body is refused before a byte of it is read.
ReadBody = Callable[[int], bytes]


def infer(read_body: ReadBody, *, content_length: str | None, request_id: str, caller: Principal | None) -> dict:
    """``POST /v1/infer``: one prediction."""
    data = request_json(read_body, content_length, settings.INFERENCE_MAX_BODY_BYTES)
    item = validation.infer_request(data)
    prediction = services.predict(
        event_id=item.event_id,
        product=item.product,
        features=item.features,
        request_id=request_id[:REQUEST_ID_MAX_LENGTH],
        client=_owner(caller),
    )
    return prediction.as_response()


def score_together(bodies: list[tuple[bytes, str | None]]) -> dict:
    """The bodies (with their Content-Length) of ``POST /v1/infer`` requests that arrived together,
    scored ahead (`inference.services.score_together`); `infer` then answers each of them."""
    items = []
    for body, content_length in bodies:
        try:
            items.append(
                validation.infer_request(request_json(lambda _limit, body=body: body, content_length, settings.INFERENCE_MAX_BODY_BYTES))
            )
        except validation.InvalidInput:  # refused by `infer` itself, with its answer
            continue
    return services.score_together(items)


def infer_batch(read_body: ReadBody, *, content_length: str | None, request_id: str, caller: Principal | None) -> dict:
    """``POST /v1/infer/batch``: ``{"items": [<infer request>, ...]}`` -> ``{"items": [<prediction>, ...]}``."""
    data = request_json(read_body, content_length, settings.INFERENCE_BATCH_MAX_BODY_BYTES)
    items, problems = validation.infer_batch_request(data, settings.INFERENCE_BATCH_MAX_ITEMS)
    predictions = services.predict_batch(
        items=items, problems=problems, request_id=request_id[:REQUEST_ID_MAX_LENGTH], client=_owner(caller)
    )
    return {"items": [prediction.as_response() for prediction in predictions]}


def recorded_prediction(prediction_id: str, *, caller: Principal | None) -> dict:
    """``GET /v1/infer/<prediction_id>``: a recorded prediction, even before its log batch is written.
    May wait (`inference.selectors.prediction_get`) and reads the database: never on an event loop."""
    try:
        key = uuid.UUID(prediction_id)
    except ValueError:
        raise exceptions.NotFound("No prediction has this id.") from None
    # Inference clients read their own predictions; auditors (and internal services) read any.
    everyone = caller is not None and caller.has_capability(ApiCapability.READ_AUDIT)
    record = selectors.prediction_get(prediction_id=key, client=None if everyone else _owner(caller))
    if record is None:
        raise exceptions.NotFound("No prediction has this id.")
    return record


def request_json(read_body: ReadBody, content_length: str | None, limit: int):
    """The request's JSON body, refused (413) from its announced length before it is read."""
    validation.check_body_size(content_length, limit)
    return validation.parse_json(read_body(limit), limit)


def _owner(caller: Principal | None) -> str:
    return caller.owner if caller is not None else ""
