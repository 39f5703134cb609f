"""The OpenAPI description of the API (drf-spectacular): auth schemes, the error body, docs views.

- **Authentication.** ``mlops.security.authentication.TokenAuthentication`` accepts three credentials, each
  described as its own security scheme so that Swagger UI offers all three: an API key as a bearer
  token (``Authorization: Bearer mlk_<prefix>.<secret>``), the same key in ``X-API-Key``, and a JWT
  as a bearer token. An admin session (cookie) is the fourth. The development bypass is not a
  credential and is left out.
- **Errors.** Every error answers the body built by ``mlops.api.errors.error_body``; it is the reusable
  component ``Error``. `AutoSchema` adds the error responses every endpoint can give (400 and 413
  for bodies, 401/403/429 for authenticated endpoints, 404 for paths with parameters) unless the
  view documents them itself, so a view only annotates what is specific to it.
- **Access.** ``/api/schema/`` and ``/api/docs/`` follow ``API_DOCS_PUBLIC``: on, anyone may read
  them; off, any valid credential (key, JWT or a staff session) may. They are not rate limited.

Views annotate with ``ERROR`` / ``error_responses`` from here, e.g.
``@extend_schema(responses={200: Out, **error_responses(409)})``.
"""

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission

from mlops.api.permissions import UNSET, capability_needed
from mlops.security.authentication import StaffSessionAuthentication, TokenAuthentication
from mlops.security.keyformat import KEY_PREFIX


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. invalid_input, not_authenticated, rate_limited.")
    message = serializers.CharField(help_text="A sentence for people; never a traceback.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: each bad field (dotted path for nested ones) with its messages.",
    )


class ErrorSerializer(serializers.Serializer):
    """The platform's one error body: ``{"error": {"code", "message", "fields"?}}``."""

    error = ErrorDetailSerializer()

    class Meta:
        ref_name = "Error"


ERROR = ErrorSerializer

_DESCRIPTIONS = {
    400: "Invalid input: `error.fields` names every bad field.",
    401: "No valid credentials (missing, malformed, expired or revoked).",
    403: "The caller's role does not grant the capability this endpoint needs.",
    404: "No such object.",
    409: "The operation is not allowed in the current state.",
    413: "The request body is larger than the configured limit.",
    422: "Valid, but it cannot be processed (values the model cannot score, a file that is no servable model); `error.fields` names them.",
    429: "Rate limit exceeded; `Retry-After` says when to retry.",
    503: "A dependency is unavailable; retry shortly.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """``{code: OpenApiResponse(Error)}`` for ``@extend_schema(responses={...})``."""
    return {code: OpenApiResponse(response=ErrorSerializer, description=_DESCRIPTIONS.get(code, "Error.")) for code in codes}


# What Python's ``str.strip()`` removes (``str.isspace``), spelled out: a CharField trims it, so a
# value of nothing else is blank and refused. Explicit because regex engines disagree on ``\s``
# (Python's includes U+001C..U+001F, ECMAScript's and Rust's do not).
PY_WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# DRF's CharField refuses NUL characters (ProhibitNullCharactersValidator; PostgreSQL text cannot hold them).
NO_NUL = "^[^\\x00]*$"
NO_NUL_NOT_BLANK = f"^[^\\x00]*[^\\x00{PY_WHITESPACE}][^\\x00]*$"


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema, plus the platform's common error responses and required capability."""

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and schema.get("type") == "string"
            and "pattern" not in schema
            # A slug or regex field's own pattern is added after this, from its validator: it already
            # excludes blanks and NUL, and a second pattern would replace it.
            and not any(isinstance(validator, RegexValidator) for validator in field.validators)
        ):
            # "   " is trimmed to "" and refused, and so is a NUL character: the schema says so.
            schema["pattern"] = NO_NUL_NOT_BLANK if field.trim_whitespace and not field.allow_blank else NO_NUL
        return schema

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body is not None and isinstance(self.get_request_serializer(), PolymorphicProxySerializer):
            body["required"] = True  # each alternative is a body: drf-spectacular cannot tell, it leaves it optional
        return body

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        permission = capability_needed(self.view, self.method)
        codes = []
        if self.method in ("POST", "PUT", "PATCH"):
            codes += [400, 413]
        if permission is not None:
            codes += [401, 403, 429]
        if "{" in self.path:
            codes.append(404)
        if self.method == "GET" and any(parameter["in"] == "query" for parameter in self._get_parameters()):
            codes.append(400)  # a query parameter out of its documented format
        for code in codes:
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(error_responses(code)[code], str(code), direction=direction)
        return dict(sorted(responses.items()))

    def get_auth(self):
        if capability_needed(self.view, self.method) is None:
            return [{}]  # public endpoint (health probes): no credential needed
        return super().get_auth()

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        permission = capability_needed(self.view, self.method)
        if operation is not None and permission is not None and permission is not UNSET:
            # Here rather than in get_description: @extend_schema(description=...) replaces that method.
            note = f"Requires the capability `{permission}`."
            operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
        return operation


# --- Links ------------------------------------------------------------------------------------
# drf-spectacular has no annotation for OpenAPI links; views declare theirs with `links` and the
# `postprocess_links` hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) writes them into the
# response, by the target's operationId. Links say how the answer of one operation feeds the next,
# for clients and for stateful testing (schemathesis follows them).
_LINKS = "x-mlops-links"


def links(status: int, targets: dict[str, tuple[str, str, dict[str, str]]]) -> dict:
    """``@extend_schema(extensions=links(201, {"name": ("GET", "/v1/x/{id}", {"id": "$response.body#/id"})}))``."""
    return {_LINKS: {str(status): targets}}


def postprocess_links(result, generator, request, public):
    for item in result["paths"].values():
        for operation in item.values():
            declared = operation.pop(_LINKS, None) if isinstance(operation, dict) else None
            for status, targets in (declared or {}).items():
                response = operation["responses"][status]
                for name, (method, path, parameters) in targets.items():
                    target = result["paths"][path][method.lower()]  # a KeyError names a link to nothing
                    response.setdefault("links", {})[name] = {"operationId": target["operationId"], "parameters": parameters}
    return result


# --- Authentication schemes ---------------------------------------------------------------------


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "mlops.security.authentication.TokenAuthentication"
    name = ["ApiKeyBearer", "ApiKeyHeader", "JWT"]

    def get_security_requirement(self, auto_schema):
        return [{name: []} for name in self.name]  # any one of them (OR)

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": f"{KEY_PREFIX}<prefix>.<secret>",
                "description": f"API key as a bearer token: `Authorization: Bearer {KEY_PREFIX}<prefix>.<secret>`.",
            },
            {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "API key in its own header."},
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A JWT from the configured issuer (JWT_ISSUER, JWT_AUDIENCE); roles in the `roles` claim.",
            },
        ]


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "mlops.security.authentication.StaffSessionAuthentication"
    name = "StaffSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "A staff member signed in to the admin; unsafe methods also need the CSRF token.",
        }


class DevBypassScheme(OpenApiAuthenticationExtension):
    """Development only, never a documented credential."""

    target_class = "mlops.security.authentication.DevBypassAuthentication"
    name = []

    def get_security_requirement(self, auto_schema):
        return None

    def get_security_definition(self, auto_schema):
        return []


# --- The docs views -----------------------------------------------------------------------------


DOCS_AUTHENTICATION = [TokenAuthentication, StaffSessionAuthentication]


class DocsAccess(BasePermission):
    """``API_DOCS_PUBLIC`` on: anyone; off: any authenticated caller (read at request time)."""

    def has_permission(self, request, view) -> bool:
        if settings.API_DOCS_PUBLIC:
            return True
        return request.auth is not None


# drf_spectacular.views reads DEFAULT_SCHEMA_CLASS (this module) when imported: import it late.


def schema_view():
    """``GET /api/schema/``: the OpenAPI 3 document (YAML; ``?format=json`` for JSON)."""
    from drf_spectacular.views import SpectacularAPIView

    return SpectacularAPIView.as_view(authentication_classes=DOCS_AUTHENTICATION, permission_classes=[DocsAccess])


def docs_view(schema_url_name: str):
    """``GET /api/docs/``: Swagger UI, served from drf-spectacular-sidecar (no CDN)."""
    from drf_spectacular.views import SpectacularSwaggerView

    return SpectacularSwaggerView.as_view(
        url_name=schema_url_name, authentication_classes=DOCS_AUTHENTICATION, permission_classes=[DocsAccess]
    )
