"""Drift gauges (docs/metrics.md): the latest PSI of each watched model's features and score.

Set by the drift job in whichever process took the turn; in multiprocess mode the most recent
value across processes is exposed (``mostrecent``), so a turn taken by another process replaces it.
"""

from prometheus_client import Gauge

FEATURE_PSI = Gauge(
    "mlops_feature_drift_psi",
    "Population stability index of one feature of the model's logged inputs against its baseline, over the drift window.",
    ["product", "model", "feature"],
    multiprocess_mode="mostrecent",
)
SCORE_PSI = Gauge(
    "mlops_score_drift_psi",
    "Population stability index of the model's logged scores against its baseline, over the drift window.",
    ["product", "model"],
    multiprocess_mode="mostrecent",
)


def publish(*, model_version, values: dict, score_key: str) -> None:
    """Set the gauges of one evaluated window (a feature without a value, below DRIFT_MIN_ROWS, is left as it was)."""
    model = f"{model_version.name}@{model_version.version}"
    for name, value in values.items():
        if value is None:
            continue
        if name == score_key:
            SCORE_PSI.labels(product=model_version.product, model=model).set(value)
        else:
            FEATURE_PSI.labels(product=model_version.product, model=model, feature=name).set(value)
