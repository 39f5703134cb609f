"""Registry services: every write to the registry goes through one of these functions.

- `lifecycle`: model versions (register, validate, promote, roll back, archive, sync, push).
- `rollout`: each product's canary (set, step, stop, promote, roll back) and shadow override.
"""

from mlops.services.lifecycle import (
    LifecycleError,
    SyncResult,
    model_push,
    model_version_archive,
    model_version_promote,
    model_version_register,
    model_version_rollback,
    model_version_validate,
    models_sync,
)
from mlops.services.rollout import (
    canary_promote,
    canary_set,
    canary_step,
    canary_stop,
    percent_to_basis_points,
    rollout_rollback,
    shadow_clear,
    shadow_disable,
    shadow_enable,
)

__all__ = [
    "LifecycleError",
    "SyncResult",
    "canary_promote",
    "canary_set",
    "canary_step",
    "canary_stop",
    "model_push",
    "model_version_archive",
    "model_version_promote",
    "model_version_register",
    "model_version_rollback",
    "model_version_validate",
    "models_sync",
    "percent_to_basis_points",
    "rollout_rollback",
    "shadow_clear",
    "shadow_disable",
    "shadow_enable",
]

# Security: API keys (create, revoke) and the role groups (mlops.roles).
from mlops.services.api_keys import ApiKeyError, api_key_create, api_key_revoke
from mlops.services.roles import roles_sync

__all__ += ["ApiKeyError", "api_key_create", "api_key_revoke", "roles_sync"]

# Dual-model streams: the fast and full model of a product (mlops.services.dual_models).
from mlops.services.dual_models import dual_model_clear, dual_model_demo_ensure, dual_model_set

__all__ += ["dual_model_clear", "dual_model_demo_ensure", "dual_model_set"]
