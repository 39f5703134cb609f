"""Prometheus metrics of the prediction log writer (process-local registry)."""

from prometheus_client import Counter, Gauge, Histogram

QUEUED = Counter("audit_log_queued_total", "Prediction log records handed to the writer")
WRITTEN = Counter("audit_log_written_total", "Prediction log records written to the database")
SPILLED = Counter("audit_log_spilled_total", "Records appended to the spill file instead of the database", ["reason"])
REPLAYED = Counter("audit_log_replayed_total", "Records read back from spill files into the database")
DROPPED = Counter("audit_log_dropped_total", "Records lost (could neither be queued, written nor spilled)", ["reason"])
REJECTED = Counter("audit_log_rejected_total", "Records the database refused (bad data); kept in the rejected folder")
QUEUE_DEPTH = Gauge("audit_log_queue_depth", "Records waiting in the writer queue")
WRITE_SECONDS = Histogram(
    "audit_log_write_seconds",
    "Time to insert one batch into the database",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_SIZE = Histogram("audit_log_batch_records", "Records per written batch", buckets=(1, 10, 50, 100, 250, 500, 1000))
PUBLISH_DROPPED = Counter("audit_log_publish_dropped_total", "Written batches not published to the live channel group")
