"""The rollout guard's Prometheus counters (docs/metrics.md)."""

from prometheus_client import Counter

ROLLBACKS = Counter("mlops_rollout_rollbacks", "Canaries stopped by the rollout guard.", ["product", "reason"])
PROMOTIONS = Counter(
    "mlops_rollout_promotions",
    "Canaries the rollout guard moved up the ladder (to: the new share in percent, or production), shown non-inferior.",
    ["product", "to"],
)
EVALUATIONS = Counter("mlops_rollout_guard_evaluations", "Rollout guard evaluations of one canary, by result.", ["result"])
