"""Per-client rate limits on the shared cache (django-ratelimit's counters).

- **Who counts**: the credential (``Principal.ident``: API key prefix, JWT subject, staff user)
  or, for a request without credentials, the client IP. Behind a proxy the IP comes only from
  the header named by ``CLIENT_IP_HEADER`` (its right-most entry: the one our proxy appended;
  entries further left were sent by the client and can be forged). ``internal_service``
  callers are exempt.
- **Which limit**: the group follows from the endpoint's capability
  (``mlops.security.roles.CAPABILITY_RATE_GROUP``); each group has one or more fixed windows in
  django-ratelimit's syntax. "30/min with a burst of 5" is two windows that must both allow
  the request: ``RATELIMIT_PREDICT`` (30/m) and ``RATELIMIT_PREDICT_BURST`` (5/s, at most 5
  requests in any one-second window), because django-ratelimit counts fixed windows, not a
  token bucket.
- **Headers**: ``X-RateLimit-Limit`` is the limit of the group's main window,
  ``X-RateLimit-Remaining`` the fewest requests left in any of its windows; a refused request
  also gets ``Retry-After`` (seconds until the window that refused it ends).
- **Counting**: django-ratelimit's windows and cache keys. On Redis the windows of a request
  are counted by one Lua script (INCR, and EXPIRE on the first count) in a single round trip:
  django-ratelimit's own ``get_usage`` costs add + incr per window through django-redis
  (measured 1.1 ms per request for the two predict windows on a loaded 2-core machine, against
  about a tenth of that here). Other caches (local memory in the embedded default) go through
  ``get_usage`` itself. Both count the same keys.
- **Cache down**: the limits *fail open* (the request is served, the failure is counted in
  ``mlops_ratelimit_fail_open_total`` and logged), and after a failure the cache is not asked
  again for ``RATELIMIT_FAIL_OPEN_PAUSE`` seconds so that a hanging Redis costs one socket
  timeout per pause, not one per request. Refusing every client because our cache is down
  would turn a cache outage into a full outage; never a 500 either way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django_ratelimit import ALL
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key, _split_rate, get_usage
from prometheus_client import Counter
from rest_framework import exceptions

from mlops.observability.tracing import span
from mlops.security.roles import CAPABILITY_RATE_GROUP, RateGroup

logger = logging.getLogger(__name__)

FAIL_OPEN = Counter("mlops_ratelimit_fail_open_total", "Requests served without a rate-limit check because the cache failed")

# setting names per group; the first is the group's main window (reported in the headers)
GROUP_RATE_SETTINGS: dict[str, tuple[str, ...]] = {
    RateGroup.PREDICT: ("RATELIMIT_PREDICT", "RATELIMIT_PREDICT_BURST"),
    RateGroup.AUDIT: ("RATELIMIT_AUDIT",),
    RateGroup.ADMIN: ("RATELIMIT_ADMIN",),
}


@dataclass(frozen=True, slots=True)
class Usage:
    limit: int
    remaining: int


class RateLimited(exceptions.Throttled):
    default_code = "rate_limited"

    def __init__(self, wait: int, usage: Usage | None = None):
        super().__init__(wait=wait, detail=f"Rate limit exceeded; retry in {wait} s.", code="rate_limited")
        self.usage = usage  # the headers go on the 429 as well


def client_ip_header() -> str | None:
    """The lower-case name of the trusted header that carries the client IP, or None."""
    header = settings.CLIENT_IP_HEADER
    return header.lower() if header else None


def client_ip_of(remote_addr: str, forwarded: str | None) -> str:
    """The client IP: the right-most entry of the trusted header's value when sent, else the peer."""
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()
    return remote_addr or "unknown"


def client_ip(request) -> str:
    """The client IP of a Django request (`client_ip_of`)."""
    meta = request.META
    header = settings.CLIENT_IP_HEADER
    forwarded = meta.get("HTTP_" + header.upper().replace("-", "_"), "") if header else None
    return client_ip_of(meta.get("REMOTE_ADDR", ""), forwarded)


class _Breaker:
    """After a cache failure, skip the limits for a pause instead of failing every request slowly."""

    def __init__(self) -> None:
        self.open_until = 0.0

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def trip(self) -> None:
        self.open_until = time.monotonic() + settings.RATELIMIT_FAIL_OPEN_PAUSE


breaker = _Breaker()


def group_rates(group: str) -> list[str]:
    return [rate for name in GROUP_RATE_SETTINGS[group] if (rate := getattr(settings, name))]


def check(request, *, capability: str | None, principal) -> Usage | None:
    """`check_caller` for a Django request; the usage of a refused one is kept for its headers."""
    try:
        return check_caller(capability=capability, principal=principal, ip=client_ip(request))
    except RateLimited as exc:
        request._ratelimit_usage = exc.usage
        raise


def check_caller(*, capability: str | None, principal, ip: str) -> Usage | None:
    """Count this request against its client's limits; raise RateLimited when over.

    Returns the usage for the response headers, or None when no limit applies.
    """
    if not settings.RATELIMIT_ENABLE or capability is None:
        return None
    group = CAPABILITY_RATE_GROUP.get(capability)
    if group is None:
        return None
    if principal is not None and principal.rate_limit_exempt:
        return None
    if not breaker.allows():
        FAIL_OPEN.inc()
        return None
    ident = principal.ident if principal is not None else f"ip:{ip}"
    rates = group_rates(group)
    if not rates:
        return None
    try:
        kind = principal.kind if principal is not None else "anonymous"
        with span("rate_limit_check", group=str(group), principal_kind=kind, windows=len(rates)):
            usages = _count(f"api-{group}", ident, rates)
    except Exception:
        usages = None
        logger.warning("rate-limit cache failed; serving without limits for a while", exc_info=True)
    if usages is None:  # the cache could not count: fail open
        breaker.trip()
        FAIL_OPEN.inc()
        return None
    limit = usages[0][1]
    remaining = min(max(0, window_limit - count) for count, window_limit, _ in usages)
    wait = max((max(time_left, 1) for count, window_limit, time_left in usages if count > window_limit), default=0)
    result = Usage(limit=limit, remaining=remaining)
    if wait:
        raise RateLimited(wait=wait, usage=result)
    return result


# INCR each window's key; EXPIRE it on its first count (and repair a key left without a TTL).
_COUNT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 or redis.call('TTL', key) == -1 then
    redis.call('EXPIRE', key, ARGV[i])
  end
  counts[i] = count
end
return counts
"""
_scripts: dict[int, object] = {}


def _count(group: str, ident: str, rates: list[str]) -> list[tuple[int, int, int]] | None:
    """Count one request in each window: [(count, limit, seconds left in the window), ...]."""
    cache = caches[settings.RATELIMIT_USE_CACHE]
    client_of = getattr(getattr(cache, "client", None), "get_client", None)
    if client_of is None:  # not django-redis: django-ratelimit's own counting
        usages = []
        for rate in rates:
            usage = get_usage(None, group=group, key=lambda _group, _request: ident, rate=rate, increment=True)
            if usage is None or usage["limit"] == 0:
                return None
            usages.append((usage["count"], usage["limit"], usage["time_left"]))
        return usages
    keys, expiries, windows = [], [], []
    for rate in rates:
        limit, period = _split_rate(rate)
        window = _get_window(ident, period)
        keys.append(cache.make_key(_make_cache_key(group, window, rate, ident, ALL)))
        expiries.append(period + EXPIRATION_FUDGE)
        windows.append((limit, window))
    redis = client_of(write=True)
    script = _scripts.get(id(redis))
    if script is None:
        script = _scripts[id(redis)] = redis.register_script(_COUNT_SCRIPT)
    counts = script(keys=keys, args=expiries, client=redis)
    now = int(time.time())
    return [(int(count), limit, window - now) for count, (limit, window) in zip(counts, windows, strict=True)]


def header_items(usage: Usage) -> list[tuple[str, str]]:
    return [("X-RateLimit-Limit", str(usage.limit)), ("X-RateLimit-Remaining", str(usage.remaining))]


def apply_headers(response, usage: Usage) -> None:
    for name, value in header_items(usage):
        response[name] = value
