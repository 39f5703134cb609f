"""Where one ``POST /v1/infer`` spends its time: cProfile of the full Django stack, in process.

Same throw-away platform as ``bench/run.py``'s headline (``testbed.py``: DEBUG off,
PostgreSQL/Redis when reachable, log writer on, a rate-limited key, canary at 10%), with the
shadow on every event as this profile always had it (``--no-shadow``: none), but requests go through Django's test client (no socket, no
gunicorn), so the profile shows the application's own cost. Prints the share of the request
spent in each layer, then the top functions.

Usage: ``.venv/bin/python bench/profile_request.py [--requests 3000] [--cached]``.
"""

import argparse
import cProfile
import json
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from testbed import bootstrap, drop_database, prepare_environment, set_shadow

# Functions whose cumulative time is one layer of the request, outermost first (shares overlap).
LAYERS = [
    ("whole request (test client -> handler)", "django/core/handlers/base.py", "get_response"),
    ("DRF dispatch (view + DRF machinery)", "rest_framework/views.py", "dispatch"),
    ("authentication", "rest_framework/request.py", "_authenticate"),
    ("permissions + rate limit", "rest_framework/views.py", "check_permissions"),
    ("view body: read + validate + predict", "inference/views.py", "post"),
    ("service: predict", "inference/services.py", "predict"),
    ("model run (onnxruntime incl. RunOptions)", "inference/session.py", "run"),
    ("explanation", "inference/services.py", "_explain"),
    ("log submit (audit writer)", "inference/services.py", "_log"),
    ("shadow offer", "inference/shadow.py", "schedule"),
    ("response rendering", "rest_framework/views.py", "finalize_response"),
]


def service_only(bodies: list[str], args) -> None:
    """CPU and wall time of the service path alone: parse, validate, predict, render."""
    import orjson

    from audit import writer
    from inference import services, validation

    for label, batch in (("uncached", bodies), ("cached", [bodies[0]] * len(bodies))):
        writer.flush(10)
        started, cpu = time.perf_counter(), time.process_time()
        for body in batch:
            item = validation.infer_request(orjson.loads(body))
            prediction = services.predict(event_id=item.event_id, product=item.product, features=item.features)
            orjson.dumps(prediction.as_response())
        wall = (time.perf_counter() - started) / len(batch) * 1e6
        writer.flush(30)
        used = (time.process_time() - cpu) / len(batch) * 1e6
        print(f"service path, {label}: {wall:.0f} µs wall, {used:.0f} µs CPU per request (log writer included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--cached", action="store_true", help="the same features every time (cache hits)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-shadow", action="store_true", help="disable the shadow (to see what it costs the request)")
    parser.add_argument("--no-profile", action="store_true", help="only time the requests")
    parser.add_argument("--service-only", action="store_true", help="time validation + services.predict alone (no Django)")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval for this run (seconds)")
    args = parser.parse_args()
    args.sqlite = args.no_redis = False
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    args.threads, args.worker_class, args.env = 1, "sync", []

    scratch = Path(tempfile.mkdtemp(prefix="mlops-profile-"))
    env = prepare_environment(scratch, args)
    try:
        platform = bootstrap(env)
        set_shadow(100)
        key, features = platform.key, dict(zip(platform.feature_names, platform.rows[0], strict=True))
        from django.test import Client

        from inference.runtime import runtime

        if args.no_shadow:
            from mlops import services

            services.shadow_disable(product="fraud_score", user=None, reason="profile without shadow")
        runtime.refresh()
        client = Client(HTTP_AUTHORIZATION=f"Bearer {key}" if key else "", HTTP_HOST="127.0.0.1")
        names = list(features)
        bodies = []
        for i in range(2 * args.requests + 200):  # the timed and the profiled passes each get their own
            values = dict(features)
            if not args.cached:
                values[names[i % len(names)]] *= 1 + (i // len(names) + 1) * 1e-4  # distinct in float32 too
            bodies.append(json.dumps({"event_id": f"p{i}", "product": "fraud_score", "features": values}))
        if args.service_only:
            service_only(bodies[200 : 200 + args.requests], args)
            return
        for body in bodies[:200]:  # warm up
            assert client.post("/v1/infer", body, content_type="application/json").status_code == 200
        from audit import writer

        writer.flush(10)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.requests):
            client.get("/healthz")
        writer.flush(10)
        health_cpu = (time.process_time() - cpu) / args.requests * 1e6
        health_wall = (time.perf_counter() - started) / args.requests * 1e6
        started, cpu = time.perf_counter(), time.process_time()
        for body in bodies[200 : 200 + args.requests]:
            client.post("/v1/infer", body, content_type="application/json")
        elapsed = time.perf_counter() - started
        writer.flush(30)  # the log writer's (and shadow's) work is part of a request's cost
        infer_cpu = (time.process_time() - cpu) / args.requests * 1e6
        mode = f"{'cached' if args.cached else 'uncached'}, shadow {'off' if args.no_shadow else 'on'}"
        print(f"GET /healthz (same middleware and base view, no work): {health_wall:.0f} µs wall, {health_cpu:.0f} µs CPU")
        print(
            f"{args.requests} requests, {elapsed / args.requests * 1e6:.0f} µs each without the profiler ({mode}); "
            f"{infer_cpu:.0f} µs CPU per request in all threads (log writer and shadow included)"
        )
        if args.no_profile:
            return
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for body in bodies[200 + args.requests :]:
            client.post("/v1/infer", body, content_type="application/json")
        profiler.disable()
        elapsed = time.perf_counter() - started
        print(f"{args.requests} requests, {elapsed / args.requests * 1e6:.0f} µs each under the profiler\n")
        stats = pstats.Stats(profiler)
        total = None
        print("| layer | share of a request |\n|---|---|")
        for label, path, function in LAYERS:
            cumulative = sum(value[3] for (filename, _, name), value in stats.stats.items() if filename.endswith(path) and name == function)
            total = total or cumulative
            print(f"| {label} | {cumulative / total * 100:.0f}% |")
        print()
        stats.sort_stats("tottime").print_stats(args.top)
    finally:
        if "inference.runtime" in sys.modules:
            sys.modules["inference.runtime"].runtime.stop()
        if "audit.writer" in sys.modules:
            sys.modules["audit.writer"].flush(10)  # before the database goes away
        drop_database(env)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
