"""Writer throughput into PostgreSQL: COPY vs COPY-with-conflict-check vs bulk_create.

Run: ``.venv/bin/python tests/audit/bench_writer.py`` (creates and drops database ``audit_bench``).
Not a test: the numbers go into ``audit.logstore`` and the closing note.
"""

import os
import sys
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DB = "audit_bench"
with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
    admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {DB}")
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit.logstore import OrmStore, PostgresCopyStore  # noqa: E402
from mlops.models import ModelVersion  # noqa: E402

call_command("migrate", verbosity=0)
mv = ModelVersion.objects.create(product="fraud_score", name="logreg", version="1", artifact_uri="x", sha256="0" * 64, input_schema={})


def record() -> dict:
    return {
        "prediction_id": uuid.uuid4(),
        "request_id": uuid.uuid4().hex,
        "event_id": uuid.uuid4().hex,
        "product": "fraud_score",
        "model_version_id": mv.pk,
        "role": "production",
        "features": {f"feature_{i}": i * 1.234567 for i in range(30)},
        "score": 0.42,
        "decision": "allow",
        "threshold": 0.5,
        "explain_summary": [{"feature": "feature_1", "contribution": 0.1}] * 3,
        "latency_ms": 1.2,
        "cached": False,
        "created_at": timezone.now(),
    }


BATCHES, SIZE = 40, 500
batches = [[record() for _ in range(SIZE)] for _ in range(BATCHES)]
for name, store, kwargs in [
    ("copy", PostgresCopyStore(), {}),
    ("copy_idempotent", PostgresCopyStore(), {"idempotent": True}),
    ("bulk_create", OrmStore(), {}),
]:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_predictionlog")
    store.insert(batches[0], **kwargs)  # warm up (connection, temp table)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_predictionlog")
    cpu0, t0 = time.process_time(), time.perf_counter()
    for batch in batches:
        store.insert(batch, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rows = BATCHES * SIZE
    print(f"{name:16s} {rows / wall:9,.0f} rows/s   python CPU {cpu / rows * 1e6:6.1f} µs/row")
    store.close()
# The whole writer: submit from 4 threads, then time until every row is in (batches of 500).
from audit.writer import PredictionLogWriter  # noqa: E402

with connection.cursor() as cursor:
    cursor.execute("TRUNCATE audit_predictionlog")
writer = PredictionLogWriter(spill_dir=Path("/tmp/audit-bench-spill"), max_queue=1_000_000)
writer.install_signal_handlers = False
records = [record() for _ in range(BATCHES * SIZE)]
started = time.perf_counter()
for r in records:
    writer.submit(r)
submitted = time.perf_counter() - started
writer.flush(120)
elapsed = time.perf_counter() - started
print(f"writer end to end {len(records) / elapsed:9,.0f} rows/s   submit {submitted / len(records) * 1e6:.1f} µs/record")
writer.close()
connection.close()
with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
    admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
