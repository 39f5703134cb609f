"""Per-client rate limits, decided in process memory and reconciled with Redis in the background.

- **Who counts**: the credential (``Principal.ident``: API key prefix, JWT subject, staff user)
  or, for a request without credentials, the client IP. Behind a proxy the IP comes only from
  the header named by ``CLIENT_IP_HEADER`` (its right-most entry: the one our proxy appended;
  entries further left were sent by the client and can be forged). ``internal_service``
  callers are exempt.
- **Which limit**: the group follows from the endpoint's capability
  (``mlops.security.roles.CAPABILITY_RATE_GROUP``); each group has one or more fixed windows in
  django-ratelimit's syntax. "30/min with a burst of 5" is two windows that must both allow
  the request: ``RATELIMIT_PREDICT`` (30/m) and ``RATELIMIT_PREDICT_BURST`` (5/s, at most 5
  requests in any one-second window). Windows are aligned as django-ratelimit aligns them
  (per-client offset for periods above a second) and live under its cache keys, so a
  ``@ratelimit`` decorator on the same group and rate would count the same requests.
- **Headers**: ``X-RateLimit-Limit`` is the limit of the group's main window,
  ``X-RateLimit-Remaining`` the fewest requests left in any of its windows; a refused request
  also gets ``Retry-After`` (seconds until the window that refused it ends, at least 1). Only
  admitted requests count: a request refused by the burst window does not use up the minute.
- **Deciding**: on the request thread, from this process's memory only: a request is admitted
  when, in every window of its group, (the count the store reported at the last sync + what
  this process admitted since) < limit. No cache call, no lock held across I/O: one
  uncontended lock around a few dictionary operations. ``bench/auth_cost.py`` on a loaded
  2-core machine: 16 µs wall (12 µs CPU) per check of the two predict windows, against 172 µs
  for the Lua round trip per request that this replaced.
- **Reconciling** (with the django-redis cache ``RATELIMIT_USE_CACHE``): one background thread
  per process (started with the first limited request; a forked worker starts its own and
  drops the parent's counts, which the parent reports itself) every
  ``RATELIMIT_SYNC_INTERVAL`` seconds runs one Lua script for every window of the process
  that is still open and not yet full: INCRBY of what this process admitted since the last
  sync (EXPIRE on the first count), and the resulting totals read back. One round trip per
  sync whatever the number of requests; none while the process has no open window.
- **Overshoot across processes**: a process only admits past a limit on counts it has not
  seen yet. An admission reaches the store at its process's next sync and every other
  process's view at that process's following sync, so each view lags by at most
  Λ = 2·(T + D), T the sync interval and D one sync's duration (0.2 ms on loopback; a sync
  that outlasts the cache's socket timeout fails, see below). Counting the window's last
  admission, made by a process P whose own view was below the limit: the total is at most
  limit + what the other N−1 processes admitted in the Λ before it. Each process also
  enforces every window on its own counts alone, so the burst window bounds that: in a span
  shorter than a second a process admits at most 2 bursts (one second boundary can fall inside
  it). With the defaults (T = 0.1 s, so Λ ≈ 0.2 s; 30/m with 5/s) and **2 workers, a client
  gets at most 30 + 1·2·5 = 40 requests in a minute window**, and only when the thirtieth
  lands on a second boundary while both workers are bursting; a client sending evenly at the
  burst rate gets at most 30 + ⌈5·Λ⌉ = 31. N workers: 30 + (N−1)·10. The burst window itself,
  shorter than a few syncs, may let through up to N·5 in a second. A group without a burst
  window is bounded only by each process's own count: up to N × its limit.
- **Store down or hanging**: a sync that fails (refused connection, or no answer within the
  cache's ``SOCKET_TIMEOUT``) is logged once per outage and retried after
  ``RATELIMIT_FAIL_OPEN_PAUSE`` seconds; what it was to send is kept for the retry. Meanwhile
  the limits *fail open* across processes: every process goes on enforcing its own view (the
  last counts it saw plus everything it admitted since), and each request it serves so is
  counted in ``mlops_ratelimit_fail_open_total``. That is stricter than serving everything and
  never refuses a request the shared count would have admitted (the shared count can only be
  higher), while a whole Redis outage costs no request: at worst N × the limit get through.
  Requests never wait for the store, so a hanging Redis stalls only the sync thread. A sync
  that timed out after Redis applied it is sent again: counted twice, never lost.
- **Without Redis** (the embedded default: one process, local-memory cache), this process's
  counts are the counts; the thread only forgets ended windows.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django_ratelimit import ALL
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key, _split_rate
from prometheus_client import Counter
from rest_framework import exceptions

from mlops.background.process import ProcessLocal
from mlops.observability.tracing import span
from mlops.security.roles import CAPABILITY_RATE_GROUP, RATE_LIMIT_EXEMPT_ROLES, RateGroup

logger = logging.getLogger(__name__)

FAIL_OPEN = Counter(
    "mlops_ratelimit_fail_open_total", "Requests served on this process's own rate-limit counts because the shared store failed"
)
SYNCS = Counter(
    "mlops_ratelimit_syncs_total",
    "Reconciliations of this process's rate-limit counts with the shared store (one round trip unless every open window is full)",
)

# setting names per group; the first is the group's main window (reported in the headers)
GROUP_RATE_SETTINGS: dict[str, tuple[str, ...]] = {
    RateGroup.PREDICT: ("RATELIMIT_PREDICT", "RATELIMIT_PREDICT_BURST"),
    RateGroup.AUDIT: ("RATELIMIT_AUDIT", "RATELIMIT_AUDIT_BURST"),
    RateGroup.ADMIN: ("RATELIMIT_ADMIN",),
}


@dataclass(frozen=True, slots=True)
class Usage:
    limit: int
    remaining: int


class RateLimited(exceptions.Throttled):
    """Over a limit: ``wait`` is the Retry-After, ``usage`` the X-RateLimit-* of the refusal."""

    default_code = "rate_limited"

    def __init__(self, wait: int, usage: Usage | None = None):
        # Not Throttled's own __init__: it appends "Expected available in 1 second(s)." to a detail
        # that already says when to retry.
        exceptions.APIException.__init__(self, detail=f"Rate limit exceeded; retry in {wait} s.", code="rate_limited")
        self.wait = wait
        self.usage = usage


def client_ip_header() -> str | None:
    """The lower-case name of the HTTP header trusted for the client IP, or None (REMOTE_ADDR)."""
    return settings.CLIENT_IP_HEADER.lower() or None


def client_ip_of(remote_addr: str, forwarded_header_value: str | None) -> str:
    """The client IP: the right-most entry of the trusted header when one is configured and
    sent, else the peer address. For a caller that reads the header named by `client_ip_header`."""
    if forwarded_header_value and settings.CLIENT_IP_HEADER:
        return forwarded_header_value.rsplit(",", 1)[-1].strip()
    return remote_addr or "unknown"


def client_ip(request) -> str:
    """`client_ip_of` for a Django request (also ``RATELIMIT_IP_META_KEY``, for ``@ratelimit(key="ip")``)."""
    meta = request.META
    header = settings.CLIENT_IP_HEADER
    forwarded = meta.get("HTTP_" + header.upper().replace("-", "_")) if header else None
    return client_ip_of(meta.get("REMOTE_ADDR", ""), forwarded)


def group_rates(group: str) -> list[str]:
    return [rate for name in GROUP_RATE_SETTINGS[group] if (rate := getattr(settings, name))]


def role_admits(role: str, capability: str, *, per_second: float) -> bool:
    """Whether a caller of ``role`` sending ``per_second`` requests of ``capability``, evenly, stays within every window."""
    group = CAPABILITY_RATE_GROUP.get(capability)
    if not settings.RATELIMIT_ENABLE or group is None or role in RATE_LIMIT_EXEMPT_ROLES:
        return True
    return all(per_second * period <= limit for limit, period in map(_split_rate, group_rates(group)))


class _Window:
    """One client's count in one fixed window, as this process knows it."""

    __slots__ = ("ends", "group", "ident", "key", "limit", "pending", "period", "rate", "seen", "sending")

    def __init__(self, group: str, rate: str, ident: str, ends: int, limit: int, period: int):
        self.group, self.rate, self.ident, self.ends, self.limit, self.period = group, rate, ident, ends, limit, period
        self.seen = 0  # the store's count at the last sync (this process's synced admissions included)
        self.sending = 0  # admitted here, in the sync under way
        self.pending = 0  # admitted here since
        self.key: str | None = None  # the store key, made by the sync thread (a hash: kept off the request)

    def used(self) -> int:
        return self.seen + self.sending + self.pending


# Add each window's new admissions (EXPIRE on the first count, or to repair a key left without
# a TTL) and read every window's total, in one round trip. ARGV: increment, TTL per key.
_SYNC_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  local add = tonumber(ARGV[2 * i - 1])
  local count
  if add > 0 then
    count = redis.call('INCRBY', key, add)
    if count == add or redis.call('TTL', key) == -1 then
      redis.call('EXPIRE', key, ARGV[2 * i])
    end
  else
    count = tonumber(redis.call('GET', key) or '0')
  end
  counts[i] = count
end
return counts
"""


class _Limiter:
    """This process's counts and their sync. ``process.state``: "syncing" during a round trip,
    then "synced" or "failing" (tests wait on it)."""

    def __init__(self) -> None:
        self._fresh()
        self.process = ProcessLocal("rate-limit sync", self._start, after_fork=self._fresh)

    def _fresh(self) -> None:
        # Also after a fork: the parent's counts are the parent's to report, its locks not ours.
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str, str, int], _Window] = {}
        self._work = threading.Event()  # set while there are open windows to sync
        self._store_down = False
        self._scripts: dict[int, object] = {}
        self._stop = threading.Event()  # the sync thread's; a new one per thread

    def _start(self) -> None:
        if settings.RATELIMIT_SYNC_IN_BACKGROUND:
            self._stop = threading.Event()
            threading.Thread(target=self._loop, args=(self._stop,), name="ratelimit-sync", daemon=True).start()

    def reset(self) -> None:
        """Stop the sync thread, forget every count and the store's state (tests)."""
        self._stop.set()
        self._work.set()  # wakes the thread to see it
        self.process.forget()
        with self._lock:
            self._windows.clear()
            self._work.clear()
            self._store_down = False

    # --- request path -------------------------------------------------------------------
    def admit(self, group: str, ident: str, rates: list[str]) -> Usage:
        self.process.ensure_started()
        with self._lock:
            windows = []
            for rate in rates:
                limit, period = _split_rate(rate)
                ends = _get_window(ident, period)
                window = self._windows.get((group, rate, ident, ends))
                if window is None:
                    window = self._windows[(group, rate, ident, ends)] = _Window(group, rate, ident, ends, limit, period)
                windows.append(window)
            used = [window.used() for window in windows]
            refused = [window.ends for window, count in zip(windows, used, strict=True) if count >= window.limit]
            if not refused:
                for window in windows:
                    window.pending += 1
        if not self._work.is_set():
            self._work.set()
        if refused:
            now = int(time.time())
            raise RateLimited(wait=max(max(ends - now, 1) for ends in refused), usage=Usage(limit=windows[0].limit, remaining=0))
        if self._store_down:
            FAIL_OPEN.inc()
        remaining = min(window.limit - count - 1 for window, count in zip(windows, used, strict=True))
        return Usage(limit=windows[0].limit, remaining=remaining)

    # --- background ---------------------------------------------------------------------
    def _loop(self, stop: threading.Event) -> None:
        while True:
            self._work.wait()
            if stop.is_set():
                return
            try:
                pause = self.sync()
            except Exception:  # a bug, not the store (sync handles that): keep the thread alive
                logger.exception("rate-limit sync failed")
                pause = settings.RATELIMIT_FAIL_OPEN_PAUSE
            if stop.wait(pause):
                return

    def sync(self) -> float:
        """Reconcile this process's counts with the store: seconds until the next sync is due."""
        cache = caches[settings.RATELIMIT_USE_CACHE]
        client_of = getattr(getattr(cache, "client", None), "get_client", None)
        now = int(time.time())
        with self._lock:
            self._windows = {name: window for name, window in self._windows.items() if window.ends >= now}
            if not self._windows:
                self._work.clear()  # under the lock: a request adding a window sets it again after
            if client_of is None:  # no shared store: these counts are the counts
                return settings.RATELIMIT_SYNC_INTERVAL
            # A full window cannot admit again before it ends: nothing to learn about it.
            batch = [window for window in self._windows.values() if window.pending or window.used() < window.limit]
            for window in batch:
                window.sending, window.pending = window.pending, 0
        if not batch:  # every open window is full: reconciled without asking
            SYNCS.inc()
            return settings.RATELIMIT_SYNC_INTERVAL
        args = []
        for window in batch:
            if window.key is None:
                window.key = cache.make_key(_make_cache_key(window.group, window.ends, window.rate, window.ident, ALL))
            args += [window.sending, window.period + EXPIRATION_FUDGE]
        self.process.set_state("syncing")
        try:
            redis = client_of(write=True)
            script = self._scripts.get(id(redis))
            if script is None:
                script = self._scripts[id(redis)] = redis.register_script(_SYNC_SCRIPT)
            counts = script(keys=[window.key for window in batch], args=args, client=redis)
        except Exception:
            with self._lock:
                for window in batch:
                    window.pending += window.sending
                    window.sending = 0
            if not self._store_down:
                logger.warning("rate-limit store failed: each process enforces its own counts until it is back", exc_info=True)
            self._store_down = True
            self.process.set_state("failing")
            return settings.RATELIMIT_FAIL_OPEN_PAUSE
        with self._lock:
            for window, count in zip(batch, counts, strict=True):
                window.seen, window.sending = int(count), 0
        if self._store_down:
            logger.warning("rate-limit store is back: counts are shared again")
        self._store_down = False
        SYNCS.inc()
        self.process.set_state("synced")
        return settings.RATELIMIT_SYNC_INTERVAL


limiter = _Limiter()


def check_caller(*, capability: str | None, principal, ip: str) -> Usage | None:
    """Count one request of ``principal`` (None: a caller without credentials, counted by
    ``ip``) against the limits of ``capability``'s group; raise RateLimited when over.

    Returns the usage for the response headers, or None when no limit applies. Never waits
    on the network: for any HTTP lane, Django or not.
    """
    if not settings.RATELIMIT_ENABLE or capability is None:
        return None
    group = CAPABILITY_RATE_GROUP.get(capability)
    if group is None:
        return None
    if principal is not None and principal.rate_limit_exempt:
        return None
    rates = group_rates(group)
    if not rates:
        return None
    ident = principal.ident if principal is not None else f"ip:{ip}"
    kind = principal.kind if principal is not None else "anonymous"
    with span("rate_limit_check", group=str(group), principal_kind=kind, windows=len(rates)):
        return limiter.admit(f"api-{group}", ident, rates)


def check(request, *, capability: str | None, principal) -> Usage | None:
    """`check_caller` for a Django request; a refusal's usage goes on the 429 as well."""
    try:
        return check_caller(capability=capability, principal=principal, ip=client_ip(request))
    except RateLimited as refused:
        request._ratelimit_usage = refused.usage
        raise


def header_items(usage: Usage) -> list[tuple[str, str]]:
    return [("X-RateLimit-Limit", str(usage.limit)), ("X-RateLimit-Remaining", str(usage.remaining))]


def apply_headers(response, usage: Usage) -> None:
    for name, value in header_items(usage):
        response[name] = value
