"""Admin building blocks shared by the apps."""

import logging
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.cache import cache

from mlops.services import LifecycleError

logger = logging.getLogger(__name__)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Write-once records: viewing is the only permission the admin ever grants."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def call_service_and_report(request, call: Callable[[], Any], *, success: Callable[[Any], str], refused_prefix: str = "") -> None:
    """Run ``call`` (one service call) and tell the person the outcome as an admin message.

    A service refuses a change it does not allow with `LifecycleError`, written for people: it is
    shown as an error message (after ``refused_prefix``), not a server error. Otherwise the
    message is ``success(result)``.
    """
    try:
        result = call()
    except LifecycleError as exc:
        messages.error(request, f"{refused_prefix}{exc}")
    else:
        messages.success(request, success(result))


def cached_briefly(key: str, seconds: float, compute: Callable[[], Any], *, what: str) -> Any:
    """``compute()``, shared through the shared cache for ``seconds``: several staff polling one page
    cost one set of queries. The cache is an optimisation: when it fails, the figures are computed."""
    try:
        cached = cache.get(key)
    except Exception:
        logger.warning("could not read the cached %s", what, exc_info=True)
        cached = None
    if cached is not None:
        return cached
    value = compute()
    try:
        cache.set(key, value, seconds)
    except Exception:
        logger.warning("could not cache the %s", what, exc_info=True)
    return value
