"""Registry services: every write to the registry goes through one of these functions.

- `lifecycle`: model versions (register, validate, promote, roll back, archive, sync, push).
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

__all__ = [
    "LifecycleError",
    "SyncResult",
    "model_push",
    "model_version_archive",
    "model_version_promote",
    "model_version_register",
    "model_version_rollback",
    "model_version_validate",
    "models_sync",
]
