"""A generation number that tells serving workers "configuration changed".

Services bump it after a commit that changes what is served (production, canary, shadow,
thresholds, API keys). Workers compare it with the generation they loaded, off the request path
(the serving refresher twice a second), instead of querying the registry on every request.

It must be one number for every process of the installation, so it lives where they all look
(``CONFIG_GENERATION_STORE``): the shared cache (Redis) when one is configured, else one row in
the database (`mlops.models.ConfigGeneration`). A local-memory cache would be per process: a
change made in one gunicorn worker, or in the admin beside a separate stream process, would then
reach the others only on their periodic full reload.
"""

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F

from mlops.background import clock
from mlops.models import ConfigGeneration

logger = logging.getLogger(__name__)

CACHE_KEY = "serving-config-generation"
_observed: tuple[int, float] = (-1, float("-inf"))  # (the last value read, when: clock.monotonic())


def _bump_cache() -> None:
    if not cache.add(CACHE_KEY, 1, timeout=None):
        cache.incr(CACHE_KEY)


def _read_cache() -> int:
    return int(cache.get(CACHE_KEY, 0))


def _bump_database() -> None:
    # One UPDATE: atomic however many processes bump at once; the row is made by the first bump.
    if not ConfigGeneration.objects.filter(pk=1).update(value=F("value") + 1):
        ConfigGeneration.objects.get_or_create(pk=1, defaults={"value": 1})


def _read_database() -> int:
    return ConfigGeneration.objects.filter(pk=1).values_list("value", flat=True).first() or 0


_STORES = {"cache": (_bump_cache, _read_cache), "database": (_bump_database, _read_database)}


def bump() -> None:
    try:
        _STORES[settings.CONFIG_GENERATION_STORE][0]()
    except Exception:  # workers also reload on their own timer
        logger.warning("could not bump the serving configuration generation", exc_info=True)


def bump_on_commit() -> None:
    transaction.on_commit(bump)


def current() -> int:
    """The shared generation, or -1 when it cannot be read."""
    global _observed
    try:
        value = int(_STORES[settings.CONFIG_GENERATION_STORE][1]())
    except Exception:
        logger.warning("could not read the serving configuration generation", exc_info=True)
        value = -1
    _observed = (value, clock.monotonic())
    return value


def recent(max_age: float) -> int:
    """The generation as this process last read it, if that was at most ``max_age`` seconds ago,
    else read now. The serving refresher reads it twice a second off the request path, so the
    tables that request threads check (`mlops.background.reloading`) seldom read it themselves: a
    slow store then delays no request."""
    value, read_at = _observed
    if clock.monotonic() - read_at <= max_age:
        return value
    return current()
