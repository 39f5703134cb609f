"""Roles, and the one table that says which API capabilities each role grants.

A role is a Django group of the same name (created and kept in step by
``mlops.services.roles_sync``, called from a migration). API keys and JWT callers carry a role
name and get their capabilities from ``ROLE_CAPABILITIES`` directly (no database read on the
request path); people signed in to the admin get theirs from the permissions of their groups,
``mlops.api_<capability>``, which ``roles_sync`` sets from the same table. So the table below
is the single source of truth for both.

Which rate-limit group a request counts against follows from the capability of the endpoint
(``CAPABILITY_RATE_GROUP``).
"""

from django.db import models

from mlops.choices import ApiCapability, Role

C = ApiCapability

# The table: capability -> roles that have it. Keep it readable as a matrix.
CAPABILITY_ROLES: dict[str, frozenset[str]] = {
    C.PREDICT: frozenset({Role.INFERENCE_CLIENT, Role.INTERNAL_SERVICE}),
    # inference clients read only their own predictions (the endpoint filters by caller).
    C.READ_PREDICTIONS: frozenset({Role.INFERENCE_CLIENT, Role.AUDITOR, Role.INTERNAL_SERVICE}),
    C.POST_OUTCOMES: frozenset({Role.INFERENCE_CLIENT, Role.INTERNAL_SERVICE}),
    C.READ_MODELS: frozenset({Role.ML_OPS, Role.VIEWER, Role.INTERNAL_SERVICE}),
    C.MANAGE_MODELS: frozenset({Role.ML_OPS, Role.INTERNAL_SERVICE}),
    C.MANAGE_ROLLOUT: frozenset({Role.ML_OPS, Role.INTERNAL_SERVICE}),
    C.READ_AUDIT: frozenset({Role.AUDITOR, Role.INTERNAL_SERVICE}),
}

# The same table read the other way: role -> capabilities.
ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    role: frozenset(str(cap) for cap, roles in CAPABILITY_ROLES.items() if role in roles) for role in Role.values
}

# Roles that no rate limit applies to (trusted callers inside the platform).
RATE_LIMIT_EXEMPT_ROLES: frozenset[str] = frozenset({Role.INTERNAL_SERVICE})


class RateGroup(models.TextChoices):
    PREDICT = "predict", "Inference"
    AUDIT = "audit", "Audit and prediction log"
    ADMIN = "admin", "Registry and rollout administration"


CAPABILITY_RATE_GROUP: dict[str, str] = {
    C.PREDICT: RateGroup.PREDICT,
    C.READ_PREDICTIONS: RateGroup.AUDIT,
    C.POST_OUTCOMES: RateGroup.AUDIT,
    C.READ_AUDIT: RateGroup.AUDIT,
    C.READ_MODELS: RateGroup.ADMIN,
    C.MANAGE_MODELS: RateGroup.ADMIN,
    C.MANAGE_ROLLOUT: RateGroup.ADMIN,
}

# Django model permissions (for the admin pages) each role's group gets on top of its API
# capabilities. ``app.view_*`` means every view permission of that app, so models an app adds
# later are covered the next time ``roles_sync`` runs.
ROLE_ADMIN_PERMISSIONS: dict[str, tuple[str, ...]] = {
    Role.INFERENCE_CLIENT: (),
    Role.ML_OPS: (
        "mlops.view_modelversion",
        "mlops.manage_lifecycle",
        "mlops.view_canaryconfig",
        "mlops.manage_rollout",
        "mlops.view_shadowoverride",
        "mlops.view_rollbackevent",
        "mlops.view_servingworker",
        "mlops.view_dualmodelconfig",
        "mlops.add_dualmodelconfig",
        "mlops.change_dualmodelconfig",
        "audit.view_backtest",
        "audit.add_backtest",  # the registry admin's "Backtest on logged traffic"
        "audit.view_driftwindow",  # the drift page
    ),
    Role.VIEWER: (
        "mlops.view_modelversion",
        "mlops.view_canaryconfig",
        "mlops.view_shadowoverride",
        "mlops.view_rollbackevent",
        "mlops.view_servingworker",
        "mlops.view_dualmodelconfig",
        "audit.view_backtest",
        "audit.view_driftwindow",  # the drift page
    ),
    Role.AUDITOR: ("audit.view_*", "mlops.view_modelversion", "mlops.view_rollbackevent"),
    Role.INTERNAL_SERVICE: (),
}


def capability_permission_codename(capability: str) -> str:
    """The codename of the Django permission that grants ``capability`` (on ``mlops.ApiKey``)."""
    return f"api_{capability}"


def capabilities_of_role(role: str) -> frozenset[str]:
    return ROLE_CAPABILITIES.get(role, frozenset())


def capabilities_of_roles(roles) -> frozenset[str]:
    result: frozenset[str] = frozenset()
    for role in roles:
        result |= ROLE_CAPABILITIES.get(role, frozenset())
    return result
