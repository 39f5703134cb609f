"""Per-client rate limits on the shared cache (django-ratelimit's counters).

- **Who counts**: the credential (``Principal.ident``: API key prefix, JWT subject, staff user)
  or, for a request without credentials, the client IP. Behind a proxy the IP comes only from
  the header named by ``CLIENT_IP_HEADER`` (its right-most entry: the one our proxy appended;
  entries further left were sent by the client and can be forged). ``internal_service``
  callers are exempt.
- **Which limit**: the group follows from the endpoint's capability
  (``mlops.roles.CAPABILITY_RATE_GROUP``); each group has one or more fixed windows in
  django-ratelimit's syntax. "30/min with a burst of 5" is two windows that must both allow
  the request: ``RATELIMIT_PREDICT`` (30/m) and ``RATELIMIT_PREDICT_BURST`` (5/s, at most 5
  requests in any one-second window), because django-ratelimit counts fixed windows, not a
  token bucket.
- **Headers**: ``X-RateLimit-Limit`` is the limit of the group's main window,
  ``X-RateLimit-Remaining`` the fewest requests left in any of its windows; a refused request
  also gets ``Retry-After`` (seconds until the window that refused it ends).
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
from django_ratelimit.core import get_usage
from prometheus_client import Counter
from rest_framework import exceptions

from mlops.roles import CAPABILITY_RATE_GROUP, RateGroup

logger = logging.getLogger(__name__)

FAIL_OPEN = Counter("mlops_ratelimit_fail_open_total", "Requests served without a rate-limit check because the cache failed")

# setting names per group; the first is the group's main window (reported in the headers)
GROUP_RATE_SETTINGS: dict[str, tuple[str, ...]] = {
    RateGroup.PREDICT: ("RATELIMIT_PREDICT", "RATELIMIT_PREDICT_BURST"),
    RateGroup.AUDIT: ("RATELIMIT_AUDIT",),
    RateGroup.ADMIN: ("RATELIMIT_ADMIN",),
}


class RateLimited(exceptions.Throttled):
    default_code = "rate_limited"

    def __init__(self, wait: int):
        super().__init__(wait=wait, detail=f"Rate limit exceeded; retry in {wait} s.", code="rate_limited")


@dataclass(frozen=True, slots=True)
class Usage:
    limit: int
    remaining: int


def client_ip(request) -> str:
    """The client IP: REMOTE_ADDR, or the right-most entry of the configured trusted header."""
    meta = request.META
    header = getattr(settings, "CLIENT_IP_HEADER", "")
    if header:
        value = meta.get("HTTP_" + header.upper().replace("-", "_"), "")
        if value:
            return value.rsplit(",", 1)[-1].strip()
    return meta.get("REMOTE_ADDR", "") or "unknown"


class _Breaker:
    """After a cache failure, skip the limits for a pause instead of failing every request slowly."""

    def __init__(self) -> None:
        self.open_until = 0.0

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def trip(self) -> None:
        self.open_until = time.monotonic() + getattr(settings, "RATELIMIT_FAIL_OPEN_PAUSE", 5.0)


breaker = _Breaker()


def group_rates(group: str) -> list[str]:
    return [rate for name in GROUP_RATE_SETTINGS[group] if (rate := getattr(settings, name, ""))]


def check(request, *, capability: str | None, principal) -> Usage | None:
    """Count this request against its client's limits; raise RateLimited when over.

    Returns the usage for the response headers, or None when no limit applies.
    """
    if not getattr(settings, "RATELIMIT_ENABLE", True) or capability is None:
        return None
    group = CAPABILITY_RATE_GROUP.get(capability)
    if group is None:
        return None
    if principal is not None and principal.rate_limit_exempt:
        return None
    if not breaker.allows():
        FAIL_OPEN.inc()
        return None
    ident = principal.ident if principal is not None else f"ip:{client_ip(request)}"
    limit = remaining = None
    wait = 0
    for rate in group_rates(group):
        try:
            usage = get_usage(request, group=f"api-{group}", key=lambda _group, _request: ident, rate=rate, increment=True)
        except Exception:
            usage = None
            logger.warning("rate-limit cache failed; serving without limits for a while", exc_info=True)
        if usage is None or usage["limit"] == 0:  # the cache could not count (fail open)
            breaker.trip()
            FAIL_OPEN.inc()
            return None
        left = max(0, usage["limit"] - usage["count"])
        if limit is None:
            limit = usage["limit"]
        remaining = left if remaining is None else min(remaining, left)
        if usage["should_limit"]:
            wait = max(wait, usage["time_left"], 1)
    if limit is None:
        return None
    result = Usage(limit=limit, remaining=remaining)
    if wait:
        request._ratelimit_usage = result  # the headers go on the 429 as well
        raise RateLimited(wait=wait)
    return result


def apply_headers(response, usage: Usage) -> None:
    response["X-RateLimit-Limit"] = str(usage.limit)
    response["X-RateLimit-Remaining"] = str(usage.remaining)
