"""Who is calling: API keys, JWTs and admin sessions, each turned into a `Principal`.

Every authenticated API request carries a `Principal` in ``request.auth`` (``request.user``
stays a Django user: the signed-in staff member, or ``AnonymousUser`` for keys and tokens, so
code that records "who changed it" never sees a non-user object).

The hot path is in process: active API keys are held in a dict keyed by their prefix and
reloaded only when the configuration generation in the shared cache changes (checked at most
once a second), so a revocation reaches every worker within about a second and verifying a
key costs one SHA-256 and a dict lookup. Verified JWTs are remembered until they expire, so a
client sending the same token again costs a dict lookup too.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache

import jwt
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication

from mlops.background.reloading import ReloadedTable, WouldWait
from mlops.choices import ApiCapability
from mlops.models import ApiKey
from mlops.observability.tracing import span
from mlops.security.keyformat import KEY_PREFIX, secret_digest, split_key
from mlops.security.roles import RATE_LIMIT_EXEMPT_ROLES, Role, capabilities_of_role, capabilities_of_roles, capability_permission_codename

logger = logging.getLogger(__name__)

_ANONYMOUS = AnonymousUser()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one API request, whatever credential it used.

    ``ident`` identifies the credential (rate limits count per ident); ``owner`` identifies the
    client across its credentials (what "own predictions" means: store it with a prediction
    and filter on it).
    """

    kind: str  # "api_key" | "jwt" | "session" | "dev"
    ident: str  # "key:<prefix>", "jwt:<subject>", "user:<pk>", "dev"
    owner: str  # "client:<name>", "jwt:<subject>", "user:<username>", "dev"
    name: str  # for people: client name, token subject or username
    roles: frozenset[str]
    capabilities: frozenset[str]
    user: object = field(default=None, compare=False)  # the Django user of a session, else None

    is_authenticated = True

    @property
    def rate_limit_exempt(self) -> bool:
        return not self.roles.isdisjoint(RATE_LIMIT_EXEMPT_ROLES)

    def has_capability(self, capability: str) -> bool:
        return capability in self.capabilities


class CredentialsUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "Credentials cannot be checked right now; retry shortly."
    default_code = "auth_unavailable"


# --- API keys -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _KeyEntry:
    id: int
    digest: bytes
    principal: Principal
    expires_at: float | None  # epoch seconds


class ApiKeyCache:
    """The active (not revoked) API keys of this process, by prefix (`mlops.background.reloading`: only the
    first load makes requests wait; later ones run in the background)."""

    # How often the shared generation is checked (seconds). The generation read may itself be up to
    # this old (`config_generation.recent`), so a revocation takes at most twice this plus a reload:
    # 0.5 keeps "every worker within 2 s" with room on a loaded machine.
    CHECK_INTERVAL = 0.5
    FALLBACK_RELOAD = 5.0  # reload period while the shared cache cannot be read
    MAX_AGE = 300.0  # reload at least this often even when nothing signalled a change
    MISS_WAIT = 1.0  # how long an unknown key waits for the reload that may bring it

    def __init__(self) -> None:
        self._table: ReloadedTable[dict[str, _KeyEntry]] = ReloadedTable(
            "api_keys",
            lambda _previous: _load_keys(),
            check_interval=self.CHECK_INTERVAL,
            max_age=self.MAX_AGE,
            fallback_reload=self.FALLBACK_RELOAD,
        )

    def lookup(self, prefix: str, *, wait: bool = True) -> _KeyEntry | None:
        """The active key of ``prefix``, or None. With ``wait=False`` (a caller on an event loop, which
        must not block) raises `WouldWait` instead of waiting: before the first load, and for an
        unknown key when a reload that may bring it is under way or may be started (`ReloadedTable.after_miss`)."""
        if not wait and not self._table.loaded():
            raise WouldWait("api_keys")
        entries = self._table.current()
        if entries is None:
            raise CredentialsUnavailable()
        entry = entries.get(prefix)
        if entry is None and self._table.miss_check_due():
            # An unknown key may be one created a moment ago (a script that creates a key and calls
            # with it at once): its generation bump is looked for now rather than at the next check.
            if not wait:
                raise WouldWait("api_keys")
            entry = (self._table.after_miss(self.MISS_WAIT) or {}).get(prefix)
        return entry

    def warm(self) -> None:
        """Load the table now if it never has (a server worker at start, on a thread that may wait)."""
        self._table.current()

    def refresh(self) -> None:
        """Reload now, on the calling thread, if the generation moved (background callers)."""
        self._table.refresh()

    def invalidate(self) -> None:
        """Forget everything; the next lookup reloads and waits for it (tests, and after a local change)."""
        self._table.invalidate()

    def join(self, timeout: float = 10.0) -> None:
        """Wait for a background reload in progress (tests, shutdown)."""
        self._table.join(timeout)


def _load_keys() -> dict[str, _KeyEntry]:
    entries = {}
    rows = ApiKey.objects.filter(revoked_at__isnull=True).values_list("id", "prefix", "secret_sha256", "client", "role", "expires_at")
    for key_id, prefix, digest, client, role, expires_at in rows:
        principal = Principal(
            kind="api_key",
            ident=f"key:{prefix}",
            owner=f"client:{client}",
            name=client,
            roles=frozenset({role}),
            capabilities=capabilities_of_role(role),
        )
        entries[prefix] = _KeyEntry(
            id=key_id,
            digest=bytes.fromhex(digest),
            principal=principal,
            expires_at=expires_at.timestamp() if expires_at else None,
        )
    return entries


api_keys = ApiKeyCache()


def verify_api_key(key: str, *, wait: bool = True) -> Principal:
    """The principal of a presented key, or AuthenticationFailed (``wait``: `ApiKeyCache.lookup`)."""
    parts = split_key(key)
    with span("api_key_validation", key_prefix=parts[0] if parts else None):
        if parts is None:
            raise exceptions.AuthenticationFailed("Malformed API key.", code="invalid_api_key")
        prefix, secret = parts
        entry = api_keys.lookup(prefix, wait=wait)
        if entry is None or not hmac.compare_digest(entry.digest, secret_digest(secret)):
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.", code="invalid_api_key")
        if entry.expires_at is not None and clock() >= entry.expires_at:
            raise exceptions.AuthenticationFailed("The API key has expired.", code="api_key_expired")
        return entry.principal


def clock() -> float:
    """Seconds since the epoch. Every expiry decided here (API keys, JWTs, remembered JWTs) reads
    this clock, so a test lets time pass by replacing it instead of sleeping."""
    return time.time()


# --- JWT ------------------------------------------------------------------------------------


class _PyJWT(jwt.PyJWT):
    """PyJWT, its ``exp`` check reading `clock` like the remembered tokens do; every other check
    and their order stay PyJWT's (tests/mlops/security/test_jwt.py fails if this stops applying)."""

    def _validate_exp(self, payload, now, leeway):
        super()._validate_exp(payload, clock(), leeway)


_jwt = _PyJWT()


@lru_cache(maxsize=8)
def _prepared_key(algorithm: str, key: str):
    """Parse a PEM public key once (parsing costs far more than verifying)."""
    return jwt.get_algorithm_by_name(algorithm).prepare_key(key)


def _jwt_key_material(algorithm: str) -> str:
    if algorithm.startswith("HS"):
        return settings.JWT_SECRET
    return settings.JWT_PUBLIC_KEY


class _VerifiedTokens:
    """Tokens verified recently: token -> (principal, expiry). Bounded; cleared when full."""

    MAX_SIZE = 10_000

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[Principal, float, tuple]] = {}

    def get(self, token: str, config: tuple) -> Principal | None:
        hit = self._tokens.get(token)
        if hit is None:
            return None
        principal, expires_at, hit_config = hit
        if hit_config != config or clock() >= expires_at:
            self._tokens.pop(token, None)
            return None
        return principal

    def put(self, token: str, principal: Principal, expires_at: float, config: tuple) -> None:
        if len(self._tokens) >= self.MAX_SIZE:
            self._tokens.clear()
        self._tokens[token] = (principal, expires_at, config)

    def clear(self) -> None:
        self._tokens.clear()


verified_tokens = _VerifiedTokens()


def _role_map() -> dict[str, str]:
    mapping = settings.JWT_ROLE_MAP
    return {**{role: role for role in Role.values}, **mapping}


def verify_jwt(token: str) -> Principal:
    """The principal of a presented JWT, or AuthenticationFailed (signature, iss, aud, exp)."""
    algorithm = settings.JWT_ALGORITHM
    issuer = settings.JWT_ISSUER
    audience = settings.JWT_AUDIENCE
    leeway = settings.JWT_LEEWAY
    material = _jwt_key_material(algorithm)
    # The config is part of the cached entry so that a settings change (tests, key rotation
    # on restart) never serves a token verified under the old rules.
    config = (algorithm, issuer, audience, material)
    principal = verified_tokens.get(token, config)
    if principal is not None:
        return principal
    if not material or not issuer or not audience:
        raise exceptions.AuthenticationFailed("Token authentication is not configured.", code="invalid_token")
    try:
        key = material if algorithm.startswith("HS") else _prepared_key(algorithm, material)
    except (ValueError, TypeError, jwt.InvalidKeyError):
        logger.error("JWT_PUBLIC_KEY cannot be read as a %s public key", algorithm)
        raise exceptions.AuthenticationFailed("Token authentication is not configured.", code="invalid_token") from None
    try:
        claims = _jwt.decode(
            token,
            key,
            algorithms=[algorithm],  # never taken from the token header
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise exceptions.AuthenticationFailed("The token has expired.", code="token_expired") from None
    except jwt.InvalidAudienceError:
        raise exceptions.AuthenticationFailed("The token is not meant for this service (audience).", code="invalid_token") from None
    except jwt.InvalidIssuerError:
        raise exceptions.AuthenticationFailed("The token comes from an unknown issuer.", code="invalid_token") from None
    except jwt.InvalidSignatureError:
        raise exceptions.AuthenticationFailed("The token signature is invalid.", code="invalid_token") from None
    except jwt.MissingRequiredClaimError as exc:
        raise exceptions.AuthenticationFailed(f"The token lacks the {exc.claim!r} claim.", code="invalid_token") from None
    except jwt.InvalidTokenError:
        raise exceptions.AuthenticationFailed("The token is malformed or invalid.", code="invalid_token") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise exceptions.AuthenticationFailed("The token subject is invalid.", code="invalid_token")
    raw_roles = claims.get(settings.JWT_ROLES_CLAIM, [])
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    if not isinstance(raw_roles, list):
        raw_roles = []
    role_map = _role_map()
    roles = frozenset(role_map[role] for role in raw_roles if isinstance(role, str) and role in role_map)
    principal = Principal(
        kind="jwt",
        ident=f"jwt:{subject}",
        owner=f"jwt:{subject}",
        name=subject,
        roles=roles,
        capabilities=capabilities_of_roles(roles),
    )
    verified_tokens.put(token, principal, float(claims["exp"]), config)
    return principal


# --- DRF authentication classes -------------------------------------------------------------


def principal_from_headers(authorization: str | None, api_key: str | None, *, wait: bool = True) -> Principal | None:
    """The caller named by ``Authorization: Bearer <API key or JWT>`` or ``X-API-Key: <API key>``
    (None when neither is sent, or the Authorization scheme is not ours, e.g. Basic), or
    AuthenticationFailed. Both HTTP lanes authenticate through here."""
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        credential = credential.strip()
        if not credential:
            raise exceptions.AuthenticationFailed("Empty bearer token.", code="invalid_token")
        if credential.startswith(KEY_PREFIX):
            return verify_api_key(credential, wait=wait)
        return verify_jwt(credential)
    if api_key is not None:
        return verify_api_key(api_key.strip(), wait=wait)
    return None


AUTHENTICATE_HEADER = 'Bearer realm="api"'  # WWW-Authenticate of every 401


class TokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <API key or JWT>`` or ``X-API-Key: <API key>``."""

    def authenticate(self, request):
        meta = request._request.META
        principal = principal_from_headers(meta.get("HTTP_AUTHORIZATION"), meta.get("HTTP_X_API_KEY"))
        return None if principal is None else (_ANONYMOUS, principal)

    def authenticate_header(self, request):
        return AUTHENTICATE_HEADER


class StaffSessionAuthentication(SessionAuthentication):
    """A staff member signed in to the admin: rights from the permissions of their groups.

    DRF's session authentication enforces CSRF on unsafe methods.
    """

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user = result[0]
        if not user.is_staff:
            return None
        capabilities = frozenset(
            capability for capability in ApiCapability.values if user.has_perm(f"mlops.{capability_permission_codename(capability)}")
        )
        roles = frozenset(user.groups.filter(name__in=Role.values).values_list("name", flat=True))
        principal = Principal(
            kind="session",
            ident=f"user:{user.pk}",
            owner=f"user:{user.get_username()}",
            name=user.get_username(),
            roles=roles,
            capabilities=capabilities,
            user=user,
        )
        return user, principal


DEV_PRINCIPAL = Principal(
    kind="dev",
    ident="dev",
    owner="dev",
    name="development bypass",
    roles=frozenset({Role.INTERNAL_SERVICE.value}),
    capabilities=frozenset(ApiCapability.values),
)


def dev_bypass_active() -> bool:
    return bool(settings.DEBUG and settings.API_AUTH_DEV_BYPASS)


def log_dev_bypass(method: str, path: str) -> None:
    logger.warning("API_AUTH_DEV_BYPASS: %s %s served without credentials", method, path)


class DevBypassAuthentication(BaseAuthentication):
    """Development only: a request without credentials acts with every capability.

    Active only when DEBUG is on *and* API_AUTH_DEV_BYPASS is set; a system check warns
    whenever it is. Bad credentials still fail: the classes before this one raise.
    """

    def authenticate(self, request):
        if not dev_bypass_active():
            return None
        log_dev_bypass(request.method, request.path)
        return _ANONYMOUS, DEV_PRINCIPAL
