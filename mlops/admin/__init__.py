"""Admin of the registry, one module per area (registered on import)."""

from mlops.admin import (  # noqa: F401
    api_keys,
    dual_models,
    model_versions,
    rollouts,
)
