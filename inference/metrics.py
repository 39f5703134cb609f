"""Prometheus metrics of the serving path (prometheus_client, exposed by django-prometheus at /metrics).

Several gunicorn workers: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable folder before
the server starts (it must be in the environment before prometheus_client is imported). Every
worker then writes its samples to memory-mapped files there, ``/metrics`` aggregates all of
them (django-prometheus switches to ``MultiProcessCollector`` when the variable is set), and
``inference/gunicorn_conf.py`` removes a dead worker's live gauges (``child_exit``). Counters
and histograms are summed across workers; the gauges below say how they combine.

The canary's *configured* share is the gauge ``mlops_inference_canary_ratio``; the share
actually served is ``sum(rate(mlops_inference_requests_total{role="canary"}))`` over the
product's total, per product.
"""

from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "mlops_inference_requests",
    "Predictions answered, by product, model, role, decision and status (ok, fallback, error).",
    ["product", "model", "role", "decision", "status"],
)
LATENCY = Histogram(
    "mlops_inference_latency_seconds",
    "Time to produce one prediction inside the service (validation, routing, cache, scoring, explanation).",
    ["product", "model", "role"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
CACHE = Counter("mlops_inference_cache", "Prediction cache lookups by result (hit, shared_hit, miss).", ["product", "model", "result"])
MODELS_LOADED = Gauge("mlops_inference_models_loaded", "Model sessions loaded and warmed in this process.", multiprocess_mode="livemax")
MODEL_LOADS = Counter("mlops_inference_model_loads", "Model load attempts by outcome (ok, refused).", ["product", "model", "outcome"])
ERRORS = Counter(
    "mlops_inference_prediction_errors", "Failed model runs by type (error, timeout, explain).", ["product", "model", "role", "type"]
)
FALLBACKS = Counter("mlops_inference_canary_fallbacks", "Canary-routed predictions answered by production instead.", ["product", "reason"])
CANARY_RATIO = Gauge(
    "mlops_inference_canary_ratio",
    "Configured share of the product's traffic routed to its canary.",
    ["product"],
    multiprocess_mode="livemax",
)
SHADOW_RUNS = Counter(
    "mlops_inference_shadow_runs",
    "Shadow runs by outcome (ok, error, invalid_input: the shadow cannot take the request's values).",
    ["product", "model", "outcome"],
)
SHADOW_DIFFS = Counter(
    "mlops_inference_shadow_diffs",
    "Shadow answers by distance from the primary's score (minimal, moderate, significant: SHADOW_DIFF_* settings).",
    ["product", "model", "diff_class"],
)
SHADOW_DISAGREEMENTS = Counter(
    "mlops_inference_shadow_disagreements", "Shadow answers whose decision differs from the primary's.", ["product", "model"]
)
SHADOW_SKIPS = Counter("mlops_inference_shadow_skips", "Shadow runs skipped because the shadow pool was full.", ["product"])
BATCH_ROWS = Histogram(
    "mlops_inference_batch_rows",
    "Rows per micro-batched session call (INFERENCE_MICROBATCH_*), by product and model.",
    ["product", "model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
INVALID = Counter("mlops_inference_invalid_inputs", "Refused requests by reason.", ["reason"])
REFRESHES = Counter("mlops_inference_refreshes", "Serving snapshot rebuilds by outcome (ok, error).", ["outcome"])


# Children of the per-request metrics, looked up once per label set: ``labels()`` takes a lock
# and builds a key on every call, which the hot path can do without.
@lru_cache(maxsize=4096)
def request_counter(product: str, model: str, role: str, decision: str, status: str):
    return REQUESTS.labels(product, model, role, decision, status)


@lru_cache(maxsize=4096)
def latency_histogram(product: str, model: str, role: str):
    return LATENCY.labels(product, model, role)


@lru_cache(maxsize=4096)
def cache_counter(product: str, model: str, result: str):
    return CACHE.labels(product, model, result)


@lru_cache(maxsize=4096)
def batch_rows_histogram(product: str, model: str):
    return BATCH_ROWS.labels(product, model)
