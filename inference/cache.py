"""The prediction cache: model version + feature vector -> (score, explanation summary).

- In process: a TTL LRU (cachetools), ``INFERENCE_CACHE_MAX_ITEMS`` entries for
  ``INFERENCE_CACHE_TTL_SECONDS``. cachetools is not thread-safe, so every access holds a lock
  (held for dictionary operations only, never across a model run or I/O).
- Single flight: concurrent misses for the same key compute once; the others wait for the
  first one's result (or its error), up to the model's timeout, then compute themselves.
- Optional shared tier (``INFERENCE_CACHE_SHARED``): Django's default cache (Redis in
  production), consulted on an in-process miss and filled after a computation. It costs a
  network round trip per miss, which is why it is off by default. A Redis that hangs instead of
  failing would cost every miss its socket timeout, so the tier sits behind a circuit breaker
  (`mlops.background.resilience.circuit`, ``redis:prediction-cache``): the first failure opens
  it, and while it is open the request path skips the tier at once (a miss, as without it); a
  trial call goes through every ``INFERENCE_CACHE_SHARED_PROBE_SECONDS`` plus jitter.

The key is ``<model version id>:<sha256 of the feature vector's bytes in schema order and
model dtype>``: the same features in any JSON order, or ``1`` and ``1.0``, hit the same entry.
The decision is not cached (it is derived from the score and the current threshold).
"""

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from cachetools import TTLCache
from django.conf import settings
from django.core.cache import cache as shared_cache

from mlops.background import resilience

logger = logging.getLogger(__name__)

_SHARED_PREFIX = "inference:prediction:"
SHARED_TIER = "redis:prediction-cache"  # the breaker's name, the label of its metrics


def cache_key(model_id: str, row: np.ndarray) -> str:
    return f"{model_id}:{hashlib.sha256(row.tobytes()).hexdigest()}"


class _Flight:
    __slots__ = ("error", "event", "value")

    def __init__(self):
        self.event = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class PredictionCache:
    def __init__(self, *, max_items: int, ttl: float, shared: bool):
        self._entries: TTLCache = TTLCache(maxsize=max(1, max_items), ttl=ttl)
        self._ttl = ttl
        self._shared = shared
        self._breaker = resilience.circuit(SHARED_TIER, probe_seconds=settings.INFERENCE_CACHE_SHARED_PROBE_SECONDS) if shared else None
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def get(self, key: str) -> Any | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
        if self._shared:
            self._shared_put(key, value)

    def get_or_compute(self, key: str, compute: Callable[[], Any], *, wait: float) -> tuple[Any, str]:
        """``(value, source)`` with source ``hit``, ``shared_hit`` or ``miss``.

        A caller that waited for another's computation gets ``hit``: it did not run the model.
        """
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                return value, "hit"
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            if flight.event.wait(wait):
                if flight.error is not None:
                    raise flight.error
                return flight.value, "hit"
            return compute(), "miss"  # the leader is stuck: do not wait longer than a model run may take
        try:
            source = "miss"
            value = self._shared_get(key) if self._shared else None
            if value is not None:
                source = "shared_hit"
            else:
                value = compute()
                if self._shared:
                    self._shared_put(key, value)
            with self._lock:
                self._entries[key] = value
            flight.value = value
            return value, source
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.event.set()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _shared_get(self, key: str):
        value = self._shared_call("get", lambda: shared_cache.get(_SHARED_PREFIX + key))
        return tuple(value) if value is not None else None

    def _shared_put(self, key: str, value) -> None:
        self._shared_call("set", lambda: shared_cache.set(_SHARED_PREFIX + key, value, timeout=self._ttl))

    def _shared_call(self, operation: str, call: Callable[[], Any]) -> Any:
        """``call()`` through the tier's breaker; None when it failed or the breaker is open (skipped at once)."""
        try:
            return self._breaker.call(operation, call)
        except resilience.DependencyUnavailable:
            return None
        except Exception:
            logger.warning(
                "shared prediction cache unavailable; skipping it for %gs", settings.INFERENCE_CACHE_SHARED_PROBE_SECONDS, exc_info=True
            )
            return None


_cache: PredictionCache | None = None
_cache_lock = threading.Lock()


def prediction_cache() -> PredictionCache:
    """The process's cache, built from the settings on first use."""
    global _cache
    if _cache is None:
        with _cache_lock:
            if _cache is None:
                _cache = PredictionCache(
                    max_items=settings.INFERENCE_CACHE_MAX_ITEMS,
                    ttl=settings.INFERENCE_CACHE_TTL_SECONDS,
                    shared=settings.INFERENCE_CACHE_SHARED,
                )
    return _cache


def reset() -> None:
    """Drop the cache so the next use reads the settings again (tests)."""
    global _cache
    with _cache_lock:
        _cache = None
