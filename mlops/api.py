"""The one base class every DRF endpoint derives from, and the shape of every error.

Fixing parsers, renderers, authentication and permissions here means a new endpoint is lean
(no per-request content negotiation: one orjson parser and renderer) and secure by default,
and that authentication changes in one place.

Every error answers ``{"error": {"code": ..., "message": ..., "fields": {...}}}``; ``fields``
names each bad input field (dotted paths for nested ones) and is present only for
validation errors. No traceback or internal name ever reaches a client.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops import ratelimits
from mlops.api_json import FixedJSONNegotiation, OrjsonParser, OrjsonRenderer, PayloadTooLarge, max_body_bytes
from mlops.authentication import DevBypassAuthentication, Principal, StaffSessionAuthentication, TokenAuthentication
from mlops.permissions import UNSET, HasApiCapability, Unset

logger = logging.getLogger(__name__)

__all__ = [
    "UNSET",
    "BaseAPIView",
    "FixedJSONNegotiation",
    "HasApiCapability",
    "OrjsonParser",
    "OrjsonRenderer",
    "PayloadTooLarge",
    "Unset",
    "error_body",
    "exception_handler",
    "handler404",
    "handler500",
    "iter_api_endpoints",
    "principal_of",
]


class BaseAPIView(APIView):
    """Base of every API endpoint: fixed JSON, and the platform's authentication and permissions.

    Each endpoint names the capability it needs in ``api_permission`` (see
    ``mlops.choices.ApiCapability``); roles grant capabilities (``mlops.roles``). ``None``
    marks the few endpoints that are public (health probes); an endpoint that declares
    nothing answers nobody. The caller is ``request.auth``, a
    ``mlops.authentication.Principal`` (``principal_of(request)``).

    Order of checks: body size (before anything is parsed), authentication (401), rate limit
    of the capability's group (429, also counted for callers without credentials, by IP),
    capability (403).
    """

    api_permission: str | Unset | None = UNSET

    parser_classes = [OrjsonParser]
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = FixedJSONNegotiation
    authentication_classes = [TokenAuthentication, StaffSessionAuthentication, DevBypassAuthentication]
    permission_classes = [HasApiCapability]

    def initial(self, request, *args, **kwargs):
        length = request.META.get("CONTENT_LENGTH")
        if length:
            try:
                too_large = int(length) > max_body_bytes()
            except ValueError:
                raise exceptions.ParseError("invalid Content-Length header") from None
            if too_large:
                raise PayloadTooLarge()
        super().initial(request, *args, **kwargs)

    def check_permissions(self, request):
        # Rate limit between authentication (done by now) and the capability check, so that
        # callers without credentials are limited by IP too.
        permission = self.api_permission
        request._ratelimit_usage = ratelimits.check(
            request, capability=None if permission is UNSET else permission, principal=principal_of(request)
        )
        super().check_permissions(request)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        usage = getattr(request, "_ratelimit_usage", None)
        if usage is not None:
            ratelimits.apply_headers(response, usage)
        return response


def iter_api_endpoints(urlconf=None):
    """Every URL pattern served by a BaseAPIView subclass: yields (route, view class).

    The route is the concatenated pattern text (``v1/canary/<slug:product>``, or regex text
    for ``re_path``). Walking the resolver keeps checks and the security tests in step with
    whatever endpoints the apps add.
    """
    from django.urls import URLPattern, URLResolver, get_resolver

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                view_class = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
                if isinstance(view_class, type) and issubclass(view_class, BaseAPIView):
                    yield prefix + str(pattern.pattern), view_class

    yield from walk(get_resolver(urlconf).url_patterns, "")


def principal_of(request) -> Principal | None:
    """The caller of an API request (None when it sent no credentials)."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, Principal) else None


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
    elif isinstance(exc, Ratelimited):  # django-ratelimit's decorator: a PermissionDenied that means 429
        exc = ratelimits.RateLimited(wait=60)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        return Response(error_body("invalid_input", "The request has invalid fields.", fields), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        headers = {}
        if getattr(exc, "auth_header", None):  # set by DRF on 401s from the first authenticator
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    logger.exception("unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "API")
    return Response(error_body("internal_error", "The server failed to handle this request."), status=status.HTTP_500_INTERNAL_SERVER_ERROR)


# --- Django's own error pages: JSON under the API prefixes ---------------------------------


def _is_api_path(request) -> bool:
    return request.path.startswith(tuple(getattr(settings, "API_PATH_PREFIXES", ("/v1/",))))


def handler404(request, exception=None):
    if _is_api_path(request):
        return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
    return defaults.page_not_found(request, exception)


def handler500(request):
    if _is_api_path(request):
        return JsonResponse(error_body("internal_error", "The server failed to handle this request."), status=500)
    return defaults.server_error(request)
