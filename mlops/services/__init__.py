"""Registry services: every write to the registry goes through one of these functions.

- `lifecycle`: model versions (register, validate, promote, roll back, sync, push, upload).
- `archive`: archiving a version, which stops its canary and shadow roles (refused while a dual-model stream uses it).
- `rollout`: each product's canary (set, step, stop, promote, roll back, the guard's automatic rollback), production's
  rollback with the canary row in step, and the shadow override.
- `api_keys` and `roles`: API keys (create, revoke) and the role groups (`mlops.security.roles`).
- `dual_models`: the fast and full model of a product's dual-model stream.
- `demo`: the demo platform (`manage.py bootstrap_demo`).
- `workers`: what each serving process reports it serves (operational state, not audited).
"""

from mlops.services.api_keys import ApiKeyError, api_key_create, api_key_revoke
from mlops.services.archive import ArchiveResult, model_version_archive
from mlops.services.dual_models import dual_model_clear, dual_model_demo_ensure, dual_model_set
from mlops.services.lifecycle import (
    LifecycleError,
    SyncResult,
    model_push,
    model_upload,
    model_version_promote,
    model_version_register,
    model_version_rollback,
    model_version_validate,
    models_sync,
)
from mlops.services.roles import roles_sync
from mlops.services.rollout import (
    canary_auto_promote_set,
    canary_auto_rollback,
    canary_promote,
    canary_set,
    canary_step,
    canary_stop,
    percent_to_basis_points,
    production_rollback,
    rollout_rollback,
    shadow_clear,
    shadow_disable,
    shadow_enable,
)
from mlops.services.workers import serving_worker_report

__all__ = [
    "ApiKeyError",
    "ArchiveResult",
    "LifecycleError",
    "SyncResult",
    "api_key_create",
    "api_key_revoke",
    "canary_auto_promote_set",
    "canary_auto_rollback",
    "canary_promote",
    "canary_set",
    "canary_step",
    "canary_stop",
    "dual_model_clear",
    "dual_model_demo_ensure",
    "dual_model_set",
    "model_push",
    "model_upload",
    "model_version_archive",
    "model_version_promote",
    "model_version_register",
    "model_version_rollback",
    "model_version_validate",
    "models_sync",
    "percent_to_basis_points",
    "production_rollback",
    "roles_sync",
    "rollout_rollback",
    "serving_worker_report",
    "shadow_clear",
    "shadow_disable",
    "shadow_enable",
]
