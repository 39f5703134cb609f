"""The one base class every DRF endpoint derives from.

Fixing parsers, renderers, authentication and permissions here means a new endpoint is lean
(no per-request content negotiation: one orjson parser and renderer) and secure by default,
and that authentication changes in one place. Errors take the shape in `mlops.api.errors`.
"""

from django.conf import settings
from rest_framework.views import APIView

from mlops.api.content import FixedJSONNegotiation, OrjsonParser, OrjsonRenderer, check_announced_length
from mlops.api.permissions import UNSET, HasApiCapability, Unset, capability_needed
from mlops.security import ratelimits
from mlops.security.authentication import DevBypassAuthentication, Principal, StaffSessionAuthentication, TokenAuthentication


class BaseAPIView(APIView):
    """Base of every API endpoint: fixed JSON, and the platform's authentication and permissions.

    Each endpoint names the capability it needs in ``api_permission`` (see
    ``mlops.choices.ApiCapability``), or a ``{"GET": ..., "POST": ...}`` mapping when the methods of one
    path need different ones (``capability_needed``); roles grant capabilities (``mlops.security.roles``). ``None``
    marks the few endpoints that are public (health probes); an endpoint that declares
    nothing answers nobody. The caller is ``request.auth``, a
    ``mlops.security.authentication.Principal`` (``principal_of(request)``).

    Order of checks: body size (before anything is parsed), authentication (401), rate limit
    of the capability's group (429, also counted for callers without credentials, by IP),
    capability (403).
    """

    api_permission: str | dict[str, str] | Unset | None = UNSET
    max_body_setting = "API_MAX_BODY_BYTES"  # the setting that bounds this endpoint's request bodies

    parser_classes = [OrjsonParser]
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = FixedJSONNegotiation
    authentication_classes = [TokenAuthentication, StaffSessionAuthentication, DevBypassAuthentication]
    permission_classes = [HasApiCapability]

    def initial(self, request, *args, **kwargs):
        check_announced_length(request.META.get("CONTENT_LENGTH"), getattr(settings, self.max_body_setting))
        super().initial(request, *args, **kwargs)

    def check_permissions(self, request):
        # Rate limit between authentication (done by now) and the capability check, so that
        # callers without credentials are limited by IP too.
        permission = capability_needed(self, request.method)
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
