"""The one base class every DRF endpoint derives from, and the shape of every error.

Fixing parsers, renderers, authentication and permissions here means a new endpoint is lean
(no per-request content negotiation: one orjson parser and renderer) and secure by default,
and that authentication changes in one place.

Every error answers ``{"error": {"code": ..., "message": ..., "fields": {...}}}``; ``fields``
names each bad input field (dotted paths for nested ones) and is present only for
validation errors. No traceback or internal name ever reaches a client.
"""

import logging

import orjson
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)


class OrjsonParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return orjson.loads(stream.read() if stream is not None else b"")
        except orjson.JSONDecodeError as exc:
            raise exceptions.ParseError(f"malformed JSON: {exc}") from None


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


class FixedJSONNegotiation(BaseContentNegotiation):
    """JSON in, JSON out: skips DRF's per-request negotiation (about a fifth of a request's cost)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class BaseAPIView(APIView):
    """Base of every API endpoint: fixed JSON, and the platform's authentication and permissions.

    Each endpoint names the capability it needs in ``api_permission`` (see
    ``mlops.choices.ApiCapability``); roles grant capabilities. ``None`` marks the few
    endpoints that are public (health probes).
    """

    api_permission: str | None = None

    parser_classes = [OrjsonParser]
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = FixedJSONNegotiation
    authentication_classes: list = []
    permission_classes = [AllowAny]


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


def exception_handler(exc, context):
    """DRF exception handler: every failure becomes the platform's JSON error body."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        return Response(error_body("invalid_input", "The request has invalid fields.", fields), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        headers = {}
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    logger.exception("unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "API")
    return Response(error_body("internal_error", "The server failed to handle this request."), status=status.HTTP_500_INTERNAL_SERVER_ERROR)
