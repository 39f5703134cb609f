"""The shape of every API error, and the handlers that give every failure that shape.

Every error answers ``{"error": {"code": ..., "message": ..., "fields": {...}}}``; ``fields``
names each bad input field (dotted paths for nested ones) and is present only for
validation errors. No traceback or internal name ever reaches a client.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, status
from rest_framework.response import Response

from mlops.security import ratelimits

logger = logging.getLogger(__name__)


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested ValidationError detail as ``{"a.b": ["message", ...]}``."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = "body" if key == "non_field_errors" and not prefix else (prefix if key == "non_field_errors" else f"{prefix}{key}")
            flat.update(_flatten(value, f"{name}."))
        return {key.rstrip("."): value for key, value in flat.items()}
    if isinstance(detail, list) and detail and all(isinstance(item, dict | list) for item in detail):
        flat = {}
        for index, item in enumerate(detail):
            flat.update(_flatten(item, f"{prefix}{index}."))
        return flat
    messages = [str(item) for item in detail] if isinstance(detail, list) else [str(detail)]
    return {prefix or "body": messages}


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


class Unprocessable(exceptions.APIException):
    """422: a request valid by the schema that cannot be processed as sent (values a model cannot
    score, a file that is no servable model): retrying it cannot help; ``fields`` names what."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY

    def __init__(self, fields: dict[str, list[str]], *, detail: str, code: str):
        super().__init__(detail, code)
        self.fields = fields


class UnknownReference(exceptions.NotFound):
    """A well-formed body names an object that does not exist (404, naming the fields).

    Not a 400: the request is valid by the schema, which cannot know which objects exist; a
    client tells "fix your request" (400) from "that object is gone or never was" (404).
    """

    default_detail = "The request refers to an object that does not exist."

    def __init__(self, detail: dict):
        super().__init__()
        self.fields = _flatten(detail)  # DRF's nested field errors, as a ValidationError's


def api_error(exc: exceptions.APIException) -> tuple[int, dict, dict[str, str]]:
    """The status, body and headers that answer ``exc``: the one mapping of both HTTP lanes (DRF's
    `exception_handler` and `inference.lane`), so that they cannot answer the same failure apart."""
    if isinstance(exc, exceptions.ValidationError):
        return status.HTTP_400_BAD_REQUEST, error_body("invalid_input", "The request has invalid fields.", _flatten(exc.detail)), {}
    code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
    headers = {}
    if getattr(exc, "auth_header", None):  # set by DRF on 401s from the first authenticator
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    # A refusal of a valid body may still name fields (UnknownReference, inference's Unscorable).
    return exc.status_code, error_body(code, str(exc.detail), getattr(exc, "fields", None)), headers


def exception_handler(exc, context):
    """DRF exception handler: every failure becomes the platform's JSON error body."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, Ratelimited):  # django-ratelimit's decorator: a PermissionDenied that means 429
        exc = ratelimits.RateLimited(wait=60)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        code, body, headers = api_error(exc)
        return Response(body, status=code, headers=headers)
    logger.exception("unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "API")
    return Response(error_body("internal_error", "The server failed to handle this request."), status=status.HTTP_500_INTERNAL_SERVER_ERROR)


# --- Django's own error pages: JSON under the API prefixes ---------------------------------


def _is_api_path(request) -> bool:
    return request.path.startswith(tuple(settings.API_PATH_PREFIXES))


def _no_such_endpoint() -> JsonResponse:
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


def handler404(request, exception=None):
    if _is_api_path(request):
        return _no_such_endpoint()
    return defaults.page_not_found(request, exception)


@csrf_exempt  # any method, with or without a session: the answer is the same 404, never the CSRF page
def api_not_found(request):
    """The last route under each API prefix (`mlops.urls`): a path no endpoint matches, e.g. a
    product that is no slug, answers the JSON 404 here. Only the handler would answer it too, but
    with DEBUG on Django shows its technical 404 page instead of calling ``handler404``."""
    return _no_such_endpoint()


def handler500(request):
    if _is_api_path(request):
        return JsonResponse(error_body("internal_error", "The server failed to handle this request."), status=500)
    return defaults.server_error(request)
