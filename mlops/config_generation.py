"""A generation number in the shared cache that tells serving workers "configuration changed".

Services bump it after a commit that changes what is served (production, canary, shadow,
thresholds, API keys). Workers compare it with the generation they loaded, at most once a
second, instead of querying the database on every request.
"""

import logging

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

CACHE_KEY = "serving-config-generation"


def bump() -> None:
    try:
        if not cache.add(CACHE_KEY, 1, timeout=None):
            cache.incr(CACHE_KEY)
    except Exception:  # the cache is an optimisation; workers also reload on their own timer
        logger.warning("could not bump the serving configuration generation", exc_info=True)


def bump_on_commit() -> None:
    transaction.on_commit(bump)


def current() -> int:
    try:
        return int(cache.get(CACHE_KEY, 0))
    except Exception:
        logger.warning("could not read the serving configuration generation", exc_info=True)
        return -1
