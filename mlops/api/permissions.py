"""The one permission check of the API: the caller's capabilities against the view's need."""

import logging
from collections.abc import Mapping

from rest_framework.permissions import BasePermission

from mlops.security.authentication import Principal

logger = logging.getLogger(__name__)


class Unset:
    """``api_permission`` not declared: the endpoint answers nobody (secure by default)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


def capability_needed(view, method: str) -> "str | Unset | None":
    """What ``method`` on ``view`` (a view or its class) needs: its ``api_permission``, or that
    method's entry when ``api_permission`` maps methods to capabilities (one path, two needs:
    ``GET /v1/models`` reads, ``POST /v1/models`` registers). HEAD needs what GET needs; a method the
    mapping leaves out needs UNSET, so it answers nobody."""
    needed = getattr(view, "api_permission", UNSET)
    if isinstance(needed, Mapping):
        method = method.upper()
        return needed.get(method, needed.get("GET", UNSET) if method == "HEAD" else UNSET)
    return needed


def denial_message(principal: Principal) -> str:
    """Why ``principal`` is refused an operation its capabilities do not include."""
    if not principal.capabilities:
        return "Your credentials carry no role of this platform."
    return "Your role does not allow this operation."


class HasApiCapability(BasePermission):
    """The one permission check: the caller's capabilities include the view's ``api_permission``."""

    message = "Your role does not allow this operation."

    def has_permission(self, request, view) -> bool:
        needed = capability_needed(view, request.method)
        if needed is None:
            return True
        if needed is UNSET:
            logger.error("%s declares no api_permission; refusing every caller", type(view).__name__)
            return False
        principal = request.auth
        if not isinstance(principal, Principal):
            return False  # DRF answers 401 when no authenticator succeeded
        self.message = denial_message(principal)
        return needed in principal.capabilities
