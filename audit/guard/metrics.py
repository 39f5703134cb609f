"""The rollout guard's Prometheus counters (docs/metrics.md)."""

from prometheus_client import Counter

ROLLBACKS = Counter("mlops_rollout_rollbacks", "Canaries stopped by the rollout guard.", ["product", "reason"])
EVALUATIONS = Counter("mlops_rollout_guard_evaluations", "Rollout guard evaluations of one canary, by result.", ["result"])
