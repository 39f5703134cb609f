"""JSON in, JSON out, for every API endpoint: one orjson parser and renderer, no negotiation.

Kept apart from ``mlops.api.base`` because DRF's settings name these classes: DRF imports them while
it defines ``APIView``, so this module must not import ``rest_framework.views`` itself.
"""

import orjson
from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.utils.mediatypes import media_type_matches


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def max_body_bytes() -> int:
    return settings.API_MAX_BODY_BYTES


def check_announced_length(length: str | None, limit: int | None = None) -> None:
    """Refuse a body announced larger than ``limit`` (default API_MAX_BODY_BYTES; 413) or an
    unreadable Content-Length (400) before anything is read; both HTTP lanes call this first."""
    if length:
        try:
            too_large = int(length) > (max_body_bytes() if limit is None else limit)
        except ValueError:
            raise exceptions.ParseError("invalid Content-Length header") from None
        if too_large:
            raise PayloadTooLarge()


class OrjsonParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            if stream is None:
                return orjson.loads(b"")
            limit = max_body_bytes()
            body = stream.read(limit + 1)  # bodies without Content-Length are bounded here
            if len(body) > limit:
                raise PayloadTooLarge()
            return orjson.loads(body)
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


class UploadNegotiation(FixedJSONNegotiation):
    """JSON out; in, the parser of the request's Content-Type, for the few endpoints that take a
    file (multipart). None matching answers 415, naming the type that was sent."""

    def select_parser(self, request, parsers):
        return next((parser for parser in parsers if media_type_matches(parser.media_type, request.content_type)), None)
