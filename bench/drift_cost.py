"""What one drift evaluation costs: the job over logged rows in PostgreSQL, full and incremental.

What it does, in one run:

1. A throw-away platform (``bench/testbed.py``'s ``prepare_environment``: a fresh PostgreSQL
   database, dropped at the end), migrated, with the demo logistic regression pushed with its
   training data as reference and promoted (the baseline: ``reference``).
2. ``--rows`` logged answers of it spread evenly over the last hour (30 features each, drawn
   from the reference), written with bulk INSERTs as the log writer's rows look.
3. **Full evaluation**: the window counted from scratch (what the first window, or one after a
   gap, costs): every row of the hour read, its features parsed and binned.
4. **Incremental evaluation**: one more interval's rows (``--rows / 60``: one minute at the same
   rate) logged after the window, then the next window (one minute later) evaluated from the
   previous one: only the rows that entered and the rows that slid out are read.

Each evaluation is timed on the wall clock and on this thread's CPU clock, and the PostgreSQL
backend's CPU is read from ``/proc``; per row read, then extrapolated to an hour of traffic at
``--rate`` predictions per second (3.6 M rows at 1,000/s).

Usage: ``.venv/bin/python bench/drift_cost.py [--rows 200000] [--rate 1000] [--json out.json]``.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from testbed import ROOT, drop_database, prepare_environment

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def setup(env: dict, scratch: Path):
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from mlops import services
    from mlops.artifacts.stores import store_from_url
    from mlops.demo import build_demo_models, write_demo_reference

    call_command("migrate", verbosity=0)
    demo = next(m for m in build_demo_models(scratch / "models") if m.name == "logreg")
    model = services.model_push(
        source=demo.path,
        store=store_from_url(),
        product="fraud_score",
        name="logreg",
        version="1",
        reference=write_demo_reference(scratch / "reference"),
    )
    services.model_version_validate(model_version_id=model.pk, user=None, reason="bench")
    return services.model_version_promote(model_version_id=model.pk, user=None, reason="bench")


def log_rows(model, count: int, start, end, seed: int) -> None:
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from audit.models import PredictionLog
    from mlops.demo import demo_feature_names

    data, names = load_breast_cancer().data, demo_feature_names()
    rows = data[np.random.default_rng(seed).integers(0, data.shape[0], count)]
    step = (end - start) / count
    batch = []
    for index, row in enumerate(rows):
        batch.append(
            PredictionLog(
                prediction_id=uuid.uuid4(),
                request_id=uuid.uuid4().hex,
                event_id=f"evt-{seed}-{index}",
                product="fraud_score",
                model_version=model,
                role="production",
                features={name: float(value) for name, value in zip(names, row, strict=True)},
                score=float(row[0] / 30),
                decision="allow",
                threshold=0.5,
                explain_summary=[],
                latency_ms=1.0,
                created_at=start + step * index,
            )
        )
        if len(batch) == 5000:
            PredictionLog.objects.bulk_create(batch)
            batch = []
    if batch:
        PredictionLog.objects.bulk_create(batch)


def timed(evaluate) -> dict:
    from django.db import connection

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    db_cpu, wall, cpu = backend_cpu(pid), time.perf_counter(), time.thread_time()
    window = evaluate()
    return {
        "rows_in_window": window.rows,
        "rows_read": window.rows_read,
        "incremental": window.incremental,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.thread_time() - cpu,
        "postgres_cpu_s": backend_cpu(pid) - db_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="logged answers in the hour")
    parser.add_argument("--rate", type=float, default=1000.0, help="predictions per second to extrapolate to")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    args.threads, args.worker_class, args.sqlite, args.no_redis, args.env = 1, "sync", False, False, []
    scratch = Path(tempfile.mkdtemp(prefix="drift-bench-"))
    env = prepare_environment(scratch, args)
    if not env["DATABASE_URL"].startswith("postgres"):
        sys.exit("needs PostgreSQL on 127.0.0.1:5432")
    env.update({"DRIFT_WINDOW_SECONDS": "3600", "DRIFT_LAG_SECONDS": "0"})
    try:
        model = setup(env, scratch)
        from django.db import connection
        from django.utils import timezone

        from audit.drift import services

        end = timezone.now().replace(microsecond=0)
        started = time.perf_counter()
        log_rows(model, args.rows, end - timedelta(hours=1), end, seed=1)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE audit_predictionlog")
        print(f"drift cost: {args.rows:,} logged answers over one hour, 30 features (inserted in {time.perf_counter() - started:.1f} s)")
        built = time.perf_counter()
        baseline = services.drift_baseline_ensure(model_version=model)
        print(f"baseline from {baseline.source}: {baseline.rows} rows, {time.perf_counter() - built:.2f} s (once per model version)")
        full = timed(lambda: services.drift_window_evaluate(model_version=model, baseline=baseline, end=end))
        interval_rows = args.rows // 60
        log_rows(model, interval_rows, end, end + timedelta(minutes=1), seed=2)
        step = timed(lambda: services.drift_window_evaluate(model_version=model, baseline=baseline, end=end + timedelta(minutes=1)))
        hour = 3600 * args.rate
        results = {"rows": args.rows, "rate": args.rate, "full": full, "incremental": step}
        for name, result in (("full", full), ("incremental (one minute later)", step)):
            per_row = {key: result[key] / result["rows_read"] * 1e6 for key in ("wall_s", "cpu_s", "postgres_cpu_s")}
            result["per_row_us"] = per_row
            print(
                f"{name}: read {result['rows_read']:,} rows (window {result['rows_in_window']:,}) in {result['wall_s']:.2f} s wall, "
                f"{result['cpu_s']:.2f} s CPU here, {result['postgres_cpu_s']:.2f} s PostgreSQL CPU; per row read: "
                f"{per_row['wall_s']:.1f} µs wall, {per_row['cpu_s']:.1f} µs CPU, {per_row['postgres_cpu_s']:.1f} µs PostgreSQL"
            )
        full_hour = hour * full["per_row_us"]["wall_s"] / 1e6
        minute_rows = 2 * 60 * args.rate
        minute = minute_rows * step["per_row_us"]["wall_s"] / 1e6
        results["extrapolated"] = {"full_window_s": full_hour, "incremental_evaluation_s": minute, "incremental_rows": minute_rows}
        print(
            f"at {args.rate:,.0f} predictions/s: a full count of one hour ({hour:,.0f} rows) ≈ {full_hour:.0f} s; an incremental "
            f"evaluation every 60 s reads ≈ {minute_rows:,.0f} rows ≈ {minute:.1f} s, i.e. ≈ {minute / 60:.1%} of one core"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        drop_database(env)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
