"""Admin of the registry, one module per area (registered on import)."""

from mlops.admin import api_keys, model_versions, rollouts  # noqa: F401
from mlops.admin import dual_models  # noqa: F401  (dual-model streams)
