"""The prediction log at scale: how long each read takes with N rows in PostgreSQL, and what writing costs.

What it does, in one run:

1. A throw-away platform (``bench/testbed.py``: a fresh PostgreSQL database, dropped at the end),
   migrated, with a production and a canary model version and a canary at 25%.
2. ``--rows`` log rows spread over the last 24 hours, made by the database itself (``INSERT ...
   SELECT ... generate_series``, no Python per row): 70% production answers, 20% canary answers
   (2% of them failed over), 10% shadow runs with their comparison; and an outcome for 5% of the
   events. Then ``manage.py audit_rollup --rebuild`` sums them (timed: rows/s), as after any load
   that bypasses the writer.
3. Warm, best of ``--repeat``: ``GET /v1/audit/summary`` over 1 h and 24 h, ``GET /v1/audit/compare``
   over 24 h (with the demo's two segmentations and without), the admin's prediction log list and
   its comparison page over 24 h (through Django's test client, as a staff user: the whole view,
   templates included), the rollout guard's
   evaluation of the canary (`audit.guard.services.canary_assess`), ``GET /v1/infer/{id}``, and an
   export of ``--export-rows`` rows (rows/s).
4. The log writer's sustained insert rate with rollups on (``bench/writer_throughput.py``'s whole
   writer: the real `PredictionLogWriter`, COPY and rollups in one transaction per batch).
5. Retention of one day: a day of rows 40 days back (its partition made first, as the guard
   process makes them ahead), then what ``audit_retention --older-than 39`` runs.

Usage: ``.venv/bin/python bench/log_scale.py [--rows 1000000] [--repeat 3] [--json out.json]``.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from testbed import drop_database, prepare_environment
from writer_throughput import build_records, setup_platform, whole_writer

# One statement makes every row: the role, version, decision and latency drawn from the row number
# with PostgreSQL's random(), the time spread evenly over [start, end).
LOAD_SQL = """
INSERT INTO audit_predictionlog (prediction_id, request_id, client, event_id, product, model_version_id, role, features,
    score, decision, threshold, explain_summary, latency_ms, cached, fallback_from_id, fallback_reason,
    primary_prediction_id, score_diff, diff_class, decision_agrees, created_at)
SELECT gen_random_uuid(), '', 'bench', 'evt-' || n, 'fraud_score',
    CASE WHEN kind < 0.7 OR kind >= 0.9 THEN %(production)s::uuid ELSE %(canary)s::uuid END,
    CASE WHEN kind < 0.7 THEN 'production' WHEN kind < 0.9 THEN 'canary' ELSE 'shadow' END,
    jsonb_build_object('amount', round((score * 1000)::numeric, 2), 'country', 'NL'),
    score, CASE WHEN score >= 0.6 THEN 'block' WHEN score >= 0.42 THEN 'review' ELSE 'allow' END, 0.6, '[]'::jsonb,
    0.3 + random() * 4 + CASE WHEN kind >= 0.7 AND kind < 0.9 THEN 0.5 ELSE 0 END, random() < 0.1,
    NULL, '', NULL,
    CASE WHEN kind >= 0.9 THEN random() / 3 END,
    CASE WHEN kind >= 0.9 THEN (ARRAY['minimal', 'minimal', 'moderate', 'significant'])[1 + floor(random() * 4)::int] ELSE '' END,
    CASE WHEN kind >= 0.9 THEN random() < 0.85 END,
    %(start)s::timestamptz + (%(end)s::timestamptz - %(start)s::timestamptz) * (n::float8 / %(rows)s)
FROM (SELECT n, random() AS kind, random() AS score FROM generate_series(1, %(rows)s) AS n) AS drawn
"""
# Two in a hundred canary attempts failed over: production answered them (role production, fallback_from the canary).
FAILOVERS_SQL = """
INSERT INTO audit_predictionlog (prediction_id, request_id, client, event_id, product, model_version_id, role, features,
    score, decision, threshold, explain_summary, latency_ms, cached, fallback_from_id, fallback_reason,
    primary_prediction_id, score_diff, diff_class, decision_agrees, created_at)
SELECT gen_random_uuid(), '', 'bench', 'evt-f' || n, 'fraud_score', %(production)s::uuid, 'production', '{}'::jsonb,
    0.2, 'allow', 0.6, '[]'::jsonb, 12.0, false, %(canary)s::uuid, 'error', NULL, NULL, '', NULL,
    %(start)s::timestamptz + (%(end)s::timestamptz - %(start)s::timestamptz) * (n::float8 / %(rows)s)
FROM generate_series(1, %(rows)s) AS n
"""
OUTCOMES_SQL = """
INSERT INTO audit_outcome (product, event_id, prediction_id, label, observed_at, source, created_at)
SELECT 'fraud_score', event_id, NULL, random() < 0.3, now(), 'bench', now()
FROM audit_predictionlog WHERE role <> 'shadow' AND random() < 0.05
ON CONFLICT DO NOTHING
"""


def load(production, canary, rows: int, start, end) -> dict:
    from django.db import connection

    from audit import services

    # The days' partitions first, as the guard process makes them ahead in production (rows of a
    # day without one would wait in the DEFAULT partition).
    services.prediction_log_partitions_ensure(ahead_days=(end - start).days + 1, days=1, now=start)
    params = {"production": str(production.pk), "canary": str(canary.pk), "start": start, "end": end}
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(LOAD_SQL, {**params, "rows": rows})
        cursor.execute(FAILOVERS_SQL, {**params, "rows": max(1, rows * 2 // 500)})
        cursor.execute(OUTCOMES_SQL)
        cursor.execute("ANALYZE audit_predictionlog")
        cursor.execute("ANALYZE audit_outcome")
    return {"load_s": time.perf_counter() - started}


def timed(repeat: int, work) -> float:
    """The best of ``repeat`` warm runs, in ms (one more run first, to warm the caches)."""
    work()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def get(client, url: str, **params):
    response = client.get(url, params)
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return response


def without_segments(get_, client, url: str, **params):
    """The same request with no segmentations configured (the demo's default has two: 8 bins)."""
    from django.test import override_settings

    with override_settings(EVIDENCE_SEGMENTS={}):
        return get_(client, url, product="fraud_score", **params)


def reads(repeat: int, export_rows: int) -> dict:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from audit import exports
    from audit.guard import judge
    from audit.guard.services import canary_assess
    from audit.models import PredictionLog
    from audit.selectors import rows_in_window
    from mlops.models import CanaryConfig

    client = Client(HTTP_HOST="localhost")
    client.force_login(User.objects.create_superuser("bench", password="x"))  # noqa: S106
    config = CanaryConfig.objects.get(product="fraud_score")
    limits = judge.thresholds()
    newest = PredictionLog.objects.filter(role="production").order_by("-created_at").values_list("pk", flat=True).first()
    results = {
        "summary_1h_ms": timed(repeat, lambda: get(client, "/v1/audit/summary", product="fraud_score", since="1h")),
        "summary_24h_ms": timed(repeat, lambda: get(client, "/v1/audit/summary", product="fraud_score", since="24h")),
        "compare_24h_ms": timed(repeat, lambda: get(client, "/v1/audit/compare", product="fraud_score", window="24h")),
        "compare_24h_without_segments_ms": timed(repeat, lambda: without_segments(get, client, "/v1/audit/compare", window="24h")),
        "admin_changelist_ms": timed(repeat, lambda: get(client, reverse("admin:audit_predictionlog_changelist"))),
        "admin_comparison_24h_ms": timed(
            repeat, lambda: get(client, reverse("admin:audit_predictionlog_compare"), product="fraud_score", window="24h")
        ),
        "guard_evaluation_ms": timed(repeat, lambda: canary_assess(config, now=timezone.now(), limits=limits)),
        "infer_read_back_ms": timed(repeat, lambda: get(client, f"/v1/infer/{newest}")),
    }
    rows = rows_in_window(product="fraud_score", since=timezone.now() - timedelta(hours=24))
    started, exported = time.perf_counter(), 0
    for _ in exports.iter_ndjson(rows):
        exported += 1
        if exported == export_rows:
            break
    results["export_rows_per_s"] = exported / (time.perf_counter() - started)
    return results


def retention(production, canary, rows: int) -> dict:
    from django.utils import timezone

    from audit import services

    day_end = timezone.now() - timedelta(days=40)
    load(production, canary, rows, day_end - timedelta(days=1), day_end)
    started = time.perf_counter()
    result = services.prediction_log_retention_delete(older_than=timedelta(days=39))
    return {"retention_day_rows": result.deleted, "retention_day_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--export-rows", type=int, default=200_000)
    parser.add_argument("--writer-records", type=int, default=100_000)
    parser.add_argument("--retention-rows", type=int, default=100_000, help="rows of the day that retention removes")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    args.threads, args.worker_class, args.sqlite, args.no_redis, args.env = 1, "sync", False, False, []

    scratch = Path(tempfile.mkdtemp(prefix="log-scale-"))
    env = prepare_environment(scratch, args)
    if not env["DATABASE_URL"].startswith("postgres"):
        sys.exit("needs PostgreSQL on 127.0.0.1:5432")
    try:
        production, canary = setup_platform(env)
        from django.core.management import call_command
        from django.utils import timezone

        from mlops.models import CanaryConfig

        end = timezone.now()
        start = end - timedelta(hours=24)
        CanaryConfig.objects.create(
            product="fraud_score",
            production_model=production,
            canary_model=canary,
            canary_basis_points=2500,
            started_at=start,
            step_started_at=start,
        )
        results = {"rows": args.rows, **load(production, canary, args.rows, start, end)}
        print(f"{args.rows:,} rows over 24 h loaded in {results['load_s']:.1f} s", flush=True)
        started = time.perf_counter()
        call_command("audit_rollup", "--rebuild", "--since", start.isoformat(), "--until", end.isoformat())
        results["rebuild_rows_per_s"] = args.rows / (time.perf_counter() - started)
        print(f"rollups rebuilt at {results['rebuild_rows_per_s']:,.0f} rows/s", flush=True)
        results.update(reads(args.repeat, args.export_rows))
        for name, value in results.items():
            print(f"  {name}: {value:,.1f}", flush=True)
        records, _ = build_records(args.writer_records + 500, 0.5, production, canary)
        writer = whole_writer(records, redactor=None, batch_size=500)
        results["writer_rows_per_s"] = writer["rows_per_s"]
        print(f"  writer with rollups: {writer['rows_per_s']:,.0f} rows/s", flush=True)
        results.update(retention(production, canary, args.retention_rows))
        print(f"  retention of one day ({results['retention_day_rows']:,} rows): {results['retention_day_s']:.2f} s", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        drop_database(env)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
