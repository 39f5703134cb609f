"""Admin building blocks shared by the apps."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages

from mlops.services import LifecycleError


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
