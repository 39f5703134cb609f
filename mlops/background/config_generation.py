"""A generation number in the shared cache that tells serving workers "configuration changed".

Services bump it after a commit that changes what is served (production, canary, shadow,
thresholds, API keys). Workers compare it with the generation they loaded, at most once a
second, instead of querying the database on every request.
"""

import logging

from django.core.cache import cache
from django.db import transaction

from mlops.background import clock

logger = logging.getLogger(__name__)

CACHE_KEY = "serving-config-generation"
_observed: tuple[int, float] = (-1, float("-inf"))  # (the last value read, when: clock.monotonic())


def bump() -> None:
    try:
        if not cache.add(CACHE_KEY, 1, timeout=None):
            cache.incr(CACHE_KEY)
    except Exception:  # the cache is an optimisation; workers also reload on their own timer
        logger.warning("could not bump the serving configuration generation", exc_info=True)


def bump_on_commit() -> None:
    transaction.on_commit(bump)


def current() -> int:
    """The generation in the shared cache, or -1 when the cache cannot be read."""
    global _observed
    try:
        value = int(cache.get(CACHE_KEY, 0))
    except Exception:
        logger.warning("could not read the serving configuration generation", exc_info=True)
        value = -1
    _observed = (value, clock.monotonic())
    return value


def recent(max_age: float) -> int:
    """The generation as this process last read it, if that was at most ``max_age`` seconds ago,
    else read now. The serving refresher reads it twice a second off the request path, so the
    tables that request threads check (`mlops.background.reloading`) seldom touch the cache themselves: a
    slow cache then delays no request."""
    value, read_at = _observed
    if clock.monotonic() - read_at <= max_age:
        return value
    return current()
