"""Registry changes over the API: the service called on behalf of the caller, and a refused change
answered 409.

Every registry service records who and why. A staff member signed in to the admin is stamped as the
user; an API key or JWT caller has no Django user, so its kind and name lead the reason
(``[api_key:ci-pipeline] retrained on May data``). Over the API the reason is optional, as in the
documented calls (seed 001): when a client gives none, the history says so beside who called.
"""

from django.contrib.auth.models import AbstractBaseUser
from rest_framework import exceptions, status

from mlops.services import LifecycleError

NO_REASON = "no reason given"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "illegal_state"
    default_detail = "The current state does not allow this change."


def caller_of(request) -> tuple[AbstractBaseUser | None, str]:
    """The Django user to stamp (signed-in staff), and a prefix naming a key or token caller in the reason."""
    user = getattr(request, "user", None)
    if isinstance(user, AbstractBaseUser) and user.is_authenticated:
        return user, ""
    principal = getattr(request, "auth", None)
    name = getattr(principal, "name", None)
    return None, f"[{getattr(principal, 'kind', 'api')}:{name}] " if name else ""


def change(request, service, *, reason: str = "", **kwargs):
    """``service(user=..., reason=..., **kwargs)`` for the caller of ``request``; `LifecycleError` -> 409."""
    user, prefix = caller_of(request)
    try:
        return service(user=user, reason=f"{prefix}{reason or NO_REASON}", **kwargs)
    except LifecycleError as exc:
        raise Conflict(str(exc)) from None
