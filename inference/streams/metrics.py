"""Prometheus metrics of the streams (``/stream/v1/infer`` and ``/stream/live/<product>/``)."""

from prometheus_client import Counter, Gauge, Histogram

DUAL_LATENCY = Histogram(
    "mlops_stream_dual_latency_seconds",
    "Run time of each model of a dual-model stream that answered, by product, part (fast, full) and model.",
    ["product", "part", "model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DUAL_TIMEOUTS = Counter("mlops_stream_dual_timeouts", "Dual-model runs cancelled at their timeout.", ["product", "part", "model"])
DUAL_ERRORS = Counter("mlops_stream_dual_errors", "Dual-model runs that failed (model_error).", ["product", "part", "model"])
DUAL_DISCONNECTS = Counter("mlops_stream_dual_disconnects", "Dual-model streams whose client left before done.", ["product"])
DUAL_STREAMS = Counter(
    "mlops_stream_dual_streams", "Dual-model streams by outcome (complete, partial, failed, replayed).", ["product", "outcome"]
)
DUAL_RECORDS = Counter(
    "mlops_stream_dual_records", "DualRunRecord persistence by result (written, duplicate, retried, dropped).", ["result"]
)
LIVE_SUBSCRIBERS = Gauge("mlops_stream_live_subscribers", "Open live prediction streams in this process.", multiprocess_mode="livesum")
LIVE_EVENTS = Counter("mlops_stream_live_events", "Predictions sent to live subscribers, and those skipped by sampling.", ["result"])
