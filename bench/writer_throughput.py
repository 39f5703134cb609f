"""The prediction log writer: rows/s sustained into PostgreSQL by one writer, and CPU per record by stage.

What it does, in one run:

1. Prepares a throw-away platform as ``bench/run.py`` does (``prepare_environment``: a fresh
   PostgreSQL database, which is dropped at the end, and a Redis channel prefix when Redis
   answers), migrated, with a production and a shadow model version.
2. Builds ``--records`` records the way the serving path does: answers by
   ``inference.services._record`` (30 float features, a five-item explanation summary, shadow
   fields left out), and for ``--shadow-share`` of the events a shadow record as
   ``inference.shadow`` makes it (no explanation, the comparison fields filled).
3. **Whole writer**: submits them all from this thread to a real `PredictionLogWriter` (COPY
   store, redaction as configured, live publication to the channel layer) and times from the
   first submit until the last row is in: the rows/s one writer sustains. CPU per record is
   read from each thread's own clock (submitting thread, writer thread, publisher thread) and
   from ``/proc`` for the PostgreSQL backend of the writer's connection.
4. **Stages**, one at a time on this thread, same records, batches of ``AUDIT_BATCH_SIZE``:
   record building, redaction, row encoding (``audit.logstore.encode_rows``), the COPY
   (``PostgresCopyStore.insert`` minus the encoding: client CPU, with wall time and server CPU
   beside it), live publication (``audit.publish.messages`` plus the msgpack packing
   channels_redis does once per message). CPU-only stages: best of ``--repeat`` passes.

Usage: ``.venv/bin/python bench/writer_throughput.py [--records 100000] [--shadow-share 0.5]
[--redact-hash mean_radius] [--redact-drop ''] [--json out.json]``.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from testbed import ROOT, drop_database, prepare_environment

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
# The demo model's 30 features (the breast cancer data set's): ten measures, three statistics each.
MEASURES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity", "concave_points", "symmetry", "fractal")


def backend_cpu(pid: int) -> float:
    """User + system CPU seconds of one PostgreSQL backend (same host)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def thread_cpu(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def setup_platform(env: dict):
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from mlops.models import ModelVersion

    call_command("migrate", verbosity=0)

    def version(name: str, status: str) -> ModelVersion:
        return ModelVersion.objects.create(
            product="fraud_score", name=name, version="1", artifact_uri="file:///x", sha256="0" * 64, input_schema={}, status=status
        )

    return version("logreg", "production"), version("gbdt", "candidate")


def build_records(count: int, shadow_share: float, primary, shadow) -> tuple[list[dict], float]:
    """Records as the serving path hands them over, and the CPU µs per answer record of building it."""
    from django.utils import timezone

    from inference.ids import new_prediction_id
    from inference.predictions import Prediction
    from inference.services import _record

    rng = random.Random(14)
    names = [f"{stat}_{measure}" for stat in ("mean", "error", "worst") for measure in MEASURES]
    model = SimpleNamespace(uuid=primary.pk, threshold=primary.threshold)
    predictions = []
    for i in range(count):
        features = {name: rng.uniform(0, 2000) for name in names}
        top = rng.sample(names, 5)
        summary = [{"feature": n, "value": features[n], "contribution": round(rng.uniform(-3, 3), 6)} for n in top]
        score = rng.random()
        predictions.append(
            Prediction(
                prediction_id=new_prediction_id(),
                event_id=f"evt-{i}",
                product="fraud_score",
                model=model,
                role="production",
                score=score,
                decision="block" if score >= 0.5 else "allow",
                explain_summary=summary,
                latency_ms=round(rng.uniform(0.2, 3), 3),
                cached=False,
                features=features,
                client="bench",
            )
        )
    request_ids = [uuid.uuid4().hex for _ in predictions]  # made by the middleware, not by the record
    started = time.thread_time()
    answers = [_record(prediction, request_id) for prediction, request_id in zip(predictions, request_ids, strict=True)]
    build_us = (time.thread_time() - started) / count * 1e6
    records = []
    for answer in answers:
        records.append(answer)
        if rng.random() < shadow_share:
            score = rng.random()
            records.append(
                {
                    "prediction_id": new_prediction_id(),
                    "request_id": answer["request_id"],
                    "client": answer["client"],
                    "event_id": answer["event_id"],
                    "product": "fraud_score",
                    "model_version_id": shadow.pk,
                    "role": "shadow",
                    "features": answer["features"],
                    "score": score,
                    "decision": "block" if score >= 0.5 else "allow",
                    "threshold": shadow.threshold,
                    "explain_summary": [],
                    "latency_ms": 0.4,
                    "cached": False,
                    "fallback_from_id": None,
                    "fallback_reason": "",
                    "primary_prediction_id": answer["prediction_id"],
                    "score_diff": abs(score - answer["score"]),
                    "diff_class": "minimal",
                    "decision_agrees": True,
                    "created_at": timezone.now(),
                }
            )
    return records[:count], build_us


def batches_of(records: list[dict], size: int) -> list[list[dict]]:
    return [records[start : start + size] for start in range(0, len(records), size)]


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_predictionlog")


def rows_in_log() -> int:
    from audit.models import PredictionLog

    return PredictionLog.objects.count()


def whole_writer(records: list[dict], redactor, batch_size: int) -> dict:
    from audit.metrics import PUBLISH_DROPPED
    from audit.publish import Publisher
    from audit.writer import PredictionLogWriter

    publisher = Publisher()
    scratch = Path(tempfile.mkdtemp(prefix="writer-bench-spill-"))
    writer = PredictionLogWriter(
        spill_dir=scratch, max_queue=len(records) + 1, batch_size=batch_size, redactor=redactor, publisher=publisher
    )
    writer.install_signal_handlers = False
    warmup, timed = records[:batch_size], records[batch_size:]
    for record in warmup:  # connects the writer to PostgreSQL and the publisher to the channel layer
        writer.submit(record)
    writer.flush(60)
    publisher.process.wait_until(lambda: publisher._queue.unfinished_tasks == 0, timeout=30)
    backend = writer._store._conn.info.backend_pid
    publisher_thread = next(t for t in threading.enumerate() if t.name == "prediction-log-publisher")
    dropped = PUBLISH_DROPPED._value.get()
    cpu = (thread_cpu(writer._thread), thread_cpu(publisher_thread), backend_cpu(backend))

    started, submit_cpu = time.perf_counter(), time.thread_time()
    for record in timed:
        writer.submit(record)
    submit_cpu = time.thread_time() - submit_cpu
    assert writer.flush(300), "the writer did not catch up"
    elapsed = time.perf_counter() - started
    writer_cpu, db_cpu = thread_cpu(writer._thread) - cpu[0], backend_cpu(backend) - cpu[2]
    publisher.process.wait_until(lambda: publisher._queue.unfinished_tasks == 0, timeout=60)
    publisher_cpu = thread_cpu(publisher_thread) - cpu[1]
    result = {
        "records": len(timed),
        "seconds": elapsed,
        "rows_per_s": len(timed) / elapsed,
        "rows_in_log": rows_in_log(),
        "submit_us": submit_cpu / len(timed) * 1e6,
        "writer_thread_us": writer_cpu / len(timed) * 1e6,
        "publisher_thread_us": publisher_cpu / len(timed) * 1e6,
        "postgres_backend_us": db_cpu / len(timed) * 1e6,
        "publish_batches_dropped": PUBLISH_DROPPED._value.get() - dropped,
    }
    writer.close(10)
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def best_cpu(passes: int, work) -> float:
    """The least thread CPU seconds of ``passes`` runs of ``work()`` (the others were disturbed)."""
    spent = []
    for _ in range(passes):
        started = time.thread_time()
        work()
        spent.append(time.thread_time() - started)
    return min(spent)


def stages(records: list[dict], redactor, batch_size: int, repeat: int) -> dict:
    import msgpack

    from audit import logstore, publish

    batches = batches_of(records, batch_size)
    per_record = 1e6 / len(records)
    redacted = [[redactor.redact(record) for record in batch] for batch in batches]
    result = {
        "redaction_us": best_cpu(repeat, lambda: [[redactor.redact(r) for r in batch] for batch in batches]) * per_record,
        "encoding_us": best_cpu(repeat, lambda: [logstore.encode_rows(batch) for batch in redacted]) * per_record,
        "publication_us": best_cpu(
            repeat,
            lambda: [msgpack.packb(message) for batch in redacted for _, message in publish.messages(batch)],
        )
        * per_record,
    }
    truncate()
    store = logstore.PostgresCopyStore()
    store.insert(redacted[0])  # connects
    truncate()
    backend = store._conn.info.backend_pid
    db_cpu, started, cpu = backend_cpu(backend), time.perf_counter(), time.thread_time()
    for batch in redacted:
        store.insert(batch)
    copy_cpu, wall = time.thread_time() - cpu, time.perf_counter() - started
    result["copy_client_us"] = copy_cpu * per_record - result["encoding_us"]
    result["copy_wall_us"] = wall * per_record
    result["copy_server_us"] = (backend_cpu(backend) - db_cpu) * per_record
    result["copy_rows_per_s"] = len(records) / wall
    store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--shadow-share", type=float, default=0.5, help="share of events that also log a shadow record")
    parser.add_argument("--redact-hash", default="mean_radius", help="comma-separated feature keys to HMAC ('' for none)")
    parser.add_argument("--redact-drop", default="", help="comma-separated feature keys to drop")
    parser.add_argument("--repeat", type=int, default=3, help="passes of each CPU-only stage (the best counts)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    args.threads, args.worker_class, args.sqlite, args.no_redis, args.env = 1, "sync", False, False, []

    scratch = Path(tempfile.mkdtemp(prefix="writer-bench-"))
    env = prepare_environment(scratch, args)
    if not env["DATABASE_URL"].startswith("postgres"):
        sys.exit("needs PostgreSQL on 127.0.0.1:5432")
    try:
        primary, shadow = setup_platform(env)
        from django.conf import settings

        from audit.redaction import Redactor

        split = lambda text: [key for key in text.split(",") if key]  # noqa: E731
        redactor = Redactor(drop=split(args.redact_drop), hash_keys=split(args.redact_hash), hash_key=settings.SECRET_KEY)
        batch_size = settings.AUDIT_BATCH_SIZE
        records, build_us = build_records(args.records + batch_size, args.shadow_share, primary, shadow)
        layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[1]
        print(
            f"prediction log writer: {args.records:,} records ({args.shadow_share:.0%} of events shadowed), batches of "
            f"{batch_size}, redaction {'on' if redactor.active else 'off'}, live publication via {layer}"
        )
        whole = whole_writer(records, redactor, batch_size)
        print(
            f"whole writer: {whole['rows_per_s']:,.0f} rows/s sustained into PostgreSQL "
            f"({whole['records']:,} records in {whole['seconds']:.2f} s; {whole['rows_in_log']:,} rows in the log"
            f"; {whole['publish_batches_dropped']:.0f} live batches dropped)"
        )
        print(
            f"  CPU µs per record: submit (request thread) {whole['submit_us']:.1f} | writer thread {whole['writer_thread_us']:.1f}"
            f" | publisher thread {whole['publisher_thread_us']:.1f} | PostgreSQL backend {whole['postgres_backend_us']:.1f}"
        )
        parts = stages(records[batch_size:], redactor, batch_size, args.repeat)
        print(f"stages, one at a time on one thread (CPU µs per record; best of {args.repeat} for the CPU-only ones):")
        print(f"  record building (services._record)       {build_us:6.1f}")
        print(f"  redaction                                {parts['redaction_us']:6.1f}")
        print(f"  row encoding (logstore.encode_rows)      {parts['encoding_us']:6.1f}")
        print(
            f"  COPY, client side                        {parts['copy_client_us']:6.1f}   wall {parts['copy_wall_us']:.1f} µs/row, "
            f"PostgreSQL backend {parts['copy_server_us']:.1f} µs/row ({parts['copy_rows_per_s']:,.0f} rows/s)"
        )
        print(f"  live publication (messages + msgpack)    {parts['publication_us']:6.1f}")
        if args.json:
            Path(args.json).write_text(json.dumps({"whole_writer": whole, "stages": {"build_us": build_us, **parts}}, indent=2))
    finally:
        drop_database(env)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
