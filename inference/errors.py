"""The serving path's failures as API errors: one mapping for both HTTP lanes (the DRF views and
`inference.lane`), so that a refusal answers the same status, code and fields whichever served it."""

from rest_framework import exceptions, status

from inference import metrics
from inference.services import ServiceUnavailable, UnscorableInput
from inference.validation import InvalidInput
from mlops.api.errors import Unprocessable


class ServiceUnavailableError(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"
    default_detail = "The service cannot answer now; retry shortly."


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."


def as_api_exception(exc: Exception) -> Exception:
    """`InvalidInput` (counted by reason) as 400, or 413 for a body too large; `ServiceUnavailable`
    as 503; `UnscorableInput` as 422; anything else unchanged."""
    if isinstance(exc, InvalidInput):
        for reason in exc.reasons:
            metrics.INVALID.labels(reason).inc()
        if exc.reasons == {"body_too_large"}:
            return BodyTooLarge(" ".join(exc.fields["body"]))
        return exceptions.ValidationError(exc.fields)
    if isinstance(exc, ServiceUnavailable):
        return ServiceUnavailableError(str(exc), code=exc.code)
    if isinstance(exc, UnscorableInput):
        return Unprocessable(exc.fields, detail=str(exc), code="unscorable_input")
    return exc
