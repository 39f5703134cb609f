"""The hot lane's request and answer, and the headers that every answer carries.

The security headers are those Django's ``SecurityMiddleware`` and ``XFrameOptionsMiddleware`` add
to the DRF lane's answers, read from the same settings once per process.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import orjson
from django.conf import settings

JSON = "application/json"


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    client_addr: str = ""  # the peer's IP
    scheme: str = "http"
    body: bytes = b""  # at most the endpoint's limit + 1 bytes (`inference.api.ReadBody`)
    vary_cookie: bool = False  # the answer would depend on an admin session on the DRF lane

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def secure(self) -> bool:
        """HTTPS to us, or to the proxy that says so (Django's SECURE_PROXY_SSL_HEADER)."""
        if self.scheme == "https":
            return True
        proxy = _proxy_ssl_header()
        return proxy is not None and self.headers.get(proxy[0]) == proxy[1]


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_answer(status: int, data, headers: list[tuple[str, str]] | None = None) -> Answer:
    """As the DRF lane renders (`mlops.api.content.OrjsonRenderer`)."""
    return Answer(status, orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), [("Content-Type", JSON), *(headers or ())])


@lru_cache(maxsize=1)
def _proxy_ssl_header() -> tuple[str, str] | None:
    """SECURE_PROXY_SSL_HEADER as (lower-case header name, value), or None."""
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if not proxy:
        return None
    name, value = proxy
    return name.removeprefix("HTTP_").replace("_", "-").lower(), value


@lru_cache(maxsize=1)
def _always() -> tuple[tuple[str, str], ...]:
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = policy.split(",") if isinstance(policy, str) else policy
        headers.append(("Referrer-Policy", ",".join(value.strip() for value in values)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    headers.append(("X-Frame-Options", settings.X_FRAME_OPTIONS))
    return tuple(headers)


@lru_cache(maxsize=1)
def _hsts() -> tuple[str, str] | None:
    if not settings.SECURE_HSTS_SECONDS:
        return None
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return ("Strict-Transport-Security", value)


def security_headers(request: Request) -> list[tuple[str, str]]:
    hsts = _hsts() if request.secure else None
    return [*_always(), hsts] if hsts else list(_always())


def reset() -> None:
    """Forget the headers read from settings (tests that change them)."""
    _proxy_ssl_header.cache_clear()
    _always.cache_clear()
    _hsts.cache_clear()
