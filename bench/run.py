"""Load benchmark of ``POST /v1/infer`` against the real ``web`` process (``make bench``).

What it does, in one run:

1. Prepares a throw-away platform: a fresh PostgreSQL database and a Redis key prefix when
   they are reachable on localhost (SQLite and the in-memory cache otherwise), a temporary
   model store and cache, the demo models (``bootstrap_demo``: logistic regression in
   production), the gradient-boosting model as shadow of every event, and an API key.
2. Starts ``web`` as in production: gunicorn with the repository's ``gunicorn.conf.py``
   (one worker, ``mlops.wsgi``), DEBUG off, a SECRET_KEY and ALLOWED_HOSTS set, the
   prediction log writer on. The server is pinned to CPU 0 and this load generator to CPU 1
   (when the machine has two cores), like "server on one core, wrk on the other".
3. Measures a bare onnxruntime ``session.run`` of the same production model (same session
   options, one row), in this process.
4. Drives ``POST /v1/infer`` with an asyncio keep-alive HTTP/1.1 client at concurrency 1, 8
   and 64, uncached (every request has its own feature vector) and cached (one vector), and
   prints req/s and p50/p95/p99 next to the bare run and the ratio.

Usage: ``.venv/bin/python bench/run.py [--duration 5] [--warmup 1] [--json results.json]``.
"""

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_environment(scratch: Path, args) -> dict:
    env = {
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback; TLS ends at the proxy in production
        "MODEL_STORE_URL": (scratch / "store").as_uri(),
        "MODEL_CACHE_DIR": str(scratch / "cache"),
        "AUDIT_SPILL_DIR": str(scratch / "spill"),
        "CACHE_KEY_PREFIX": f"bench-{os.getpid()}",
        "CHANNEL_PREFIX": f"bench-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "WEB_WORKERS": "1",
        "WEB_THREADS": str(args.threads),
        "WEB_WORKER_CLASS": args.worker_class,
    }
    env.update(item.split("=", 1) for item in getattr(args, "env", []))
    if _reachable("127.0.0.1", 5432) and not args.sqlite:
        name = f"mlops_bench_{os.getpid()}"
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {name}"], check=True, env={**os.environ})
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{scratch / 'db.sqlite3'}"
    if _reachable("127.0.0.1", 6379) and not args.no_redis:
        env["REDIS_URL"] = "redis://127.0.0.1:6379/14"
    return env


def drop_database(env: dict) -> None:
    """Drop the benchmark's PostgreSQL database (SQLite goes with the scratch folder)."""
    if not env["DATABASE_URL"].startswith("postgres"):
        return
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()
    name = env["DATABASE_URL"].rsplit("/", 1)[1]
    command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"]
    subprocess.run(command, check=False)


def bootstrap(env: dict, shadow: bool = True) -> tuple[str, Path, dict]:
    """Migrate, create the demo, shadow gbdt, make an API key. Returns (key, model path, features)."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from mlops import services
    from mlops.artifacts.stores import download_verified
    from mlops.demo import PRODUCT, demo_feature_names
    from mlops.models import ModelVersion

    call_command("migrate", verbosity=0)
    os.environ.setdefault("DEMO_ADMIN_PASSWORD", secrets.token_urlsafe(16))
    call_command("bootstrap_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    gbdt = ModelVersion.objects.get(product=PRODUCT, name="gbdt", version="1")
    if gbdt.status == "candidate":
        services.model_version_validate(model_version_id=gbdt.pk, user=None, reason="bench")
    if shadow:
        services.shadow_enable(product=PRODUCT, shadow_model_id=gbdt.pk, sample_percent=100, user=None, reason="bench: shadow active")
    key = ""
    if hasattr(services, "api_key_create"):
        _, key = services.api_key_create(client="bench", role="internal_service")  # not rate limited
    production = ModelVersion.objects.get(product=PRODUCT, status="production")
    from sklearn.datasets import load_breast_cancer

    row = load_breast_cancer().data[0]
    features = {name: float(value) for name, value in zip(demo_feature_names(), row, strict=True)}
    from django.db import connections

    connections.close_all()
    return key, download_verified(production.artifact_uri, production.sha256), features


def start_server(env: dict, port: int, scratch: Path, multiprocess_metrics: bool = True) -> subprocess.Popen:
    config = ROOT / "gunicorn.conf.py"
    command = [GUNICORN, "-c", str(config) if config.exists() else "python:inference.gunicorn_conf", "mlops.wsgi:application"]
    server_env = {**os.environ, **env, "WEB_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    if multiprocess_metrics:  # as with several workers; one worker could do without
        multiproc = scratch / "prometheus"
        multiproc.mkdir()
        server_env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    cpus = sorted(os.sched_getaffinity(0))

    def pin():
        if len(cpus) >= 2:
            os.sched_setaffinity(0, {cpus[0]})

    log = open(scratch / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: see {scratch / 'server.log'}\n" + (scratch / "server.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not become ready within 60 s")


def bare_onnxruntime(model_path: Path, features: dict, seconds: float) -> dict:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model_path.read_bytes(), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    row = np.array([list(features.values())], dtype=np.float32)
    for _ in range(1000):
        session.run(["probabilities"], {name: row})
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        session.run(["probabilities"], {name: row})
        samples.append(time.perf_counter() - started)
    return _summary(samples, sum(samples))


def _summary(samples: list[float], elapsed: float) -> dict:
    samples = sorted(samples)

    def pct(p):
        return samples[min(len(samples) - 1, int(p / 100 * len(samples)))] * 1000

    return {
        "requests": len(samples),
        "rps": len(samples) / elapsed if elapsed else 0.0,
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "mean": statistics.fmean(samples) * 1000,
    }


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(payload)
                head = await self.reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            lower = line.lower()
            if lower.startswith(b"content-length:"):
                length = int(line[15:])
            elif lower.startswith(b"connection:") and b"close" in lower:
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def server_cpu_seconds(server: subprocess.Popen) -> float:
    """User + system CPU of the gunicorn master and its workers so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [server.pid]
    try:
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        pids += [int(pid) for pid in children]
    except OSError:
        pass
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def metrics_line(port: int, key: str, sent: int) -> str:
    """Cross-check /metrics (multiprocess mode) against the requests this run sent."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("mlops_inference_requests_total{"))
    return f"/metrics: mlops_inference_requests_total = {counted:.0f} for {sent} POST /v1/infer sent"


def build_health_requests(key: str) -> list[bytes]:
    return [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"]


def build_requests(features: dict, key: str, count: int, cached: bool) -> list[bytes]:
    names = list(features)
    headers = "Content-Type: application/json\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
    if key:
        headers += f"Authorization: Bearer {key}\r\n"
    requests = []
    for i in range(count):
        values = dict(features)
        if not cached:  # a distinct vector per request: every request misses the cache
            values[names[i % len(names)]] *= 1 + (i // len(names) + 1) * 1e-4  # distinct in float32 too
        body = json.dumps({"event_id": f"bench-{i}-{secrets.token_hex(4)}", "product": "fraud_score", "features": values}).encode()
        requests.append(f"POST /v1/infer HTTP/1.1\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return requests


async def drive(port: int, requests: list[bytes], concurrency: int, duration: float, warmup: float) -> dict:
    samples: list[float] = []
    errors = {"count": 0, "statuses": {}}
    position = 0
    measuring = False
    counts = {"warmup": 0}
    stop_at = time.perf_counter() + warmup + duration

    async def worker():
        nonlocal position
        client = Client(port)
        while time.perf_counter() < stop_at:
            payload = requests[position % len(requests)]
            position += 1
            started = time.perf_counter()
            status, _ = await client.request(payload)
            elapsed = time.perf_counter() - started
            if status != 200:
                errors["count"] += 1
                errors["statuses"][status] = errors["statuses"].get(status, 0) + 1
            if measuring:
                samples.append(elapsed)
            else:
                counts["warmup"] += 1
        client.close()

    async def clock():
        nonlocal measuring
        await asyncio.sleep(warmup)
        measuring = True

    started = time.perf_counter()
    await asyncio.gather(clock(), *(worker() for _ in range(concurrency)))
    summary = _summary(samples, time.perf_counter() - started - warmup)
    summary["warmup_requests"] = counts["warmup"]
    summary["errors"] = errors["count"]
    summary["statuses"] = errors["statuses"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class (gthread keeps connections alive)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--sqlite", action="store_true", help="use SQLite even when PostgreSQL is reachable")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--no-shadow", action="store_true", help="no shadow model (to see what the shadow costs)")
    parser.add_argument("--single-process-metrics", action="store_true", help="no PROMETHEUS_MULTIPROC_DIR")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment of the server")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (server log)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    env = prepare_environment(scratch, args)
    server = None
    try:
        key, model_path, features = bootstrap(env, shadow=not args.no_shadow)
        port = _free_port()
        server = start_server(env, port, scratch, multiprocess_metrics=not args.single_process_metrics)
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(0, {cpus[1]})
        bare = bare_onnxruntime(model_path, features, seconds=2.0)
        results = {"bare": bare, "runs": []}
        total = int(max(1, args.duration + args.warmup) * 4000)
        uncached = build_requests(features, key, total, cached=False)
        cached = build_requests(features, key, 2_000, cached=True)
        levels = [int(c) for c in args.concurrency.split(",")]
        health = build_health_requests(key)  # the floor: same server, middleware and base view, no work
        plan = [("uncached", uncached, levels), ("cached", cached, levels), ("healthz", health, [c for c in levels if c <= 8])]
        for mode, requests, concurrencies in plan:
            for concurrency in concurrencies:
                cpu = server_cpu_seconds(server)
                run = asyncio.run(drive(port, requests, concurrency, args.duration, args.warmup))
                time.sleep(0.5)  # let the log writer and shadow runs of this run finish: they are its cost
                served = run["requests"] + run["warmup_requests"]
                run["server_cpu_us"] = (server_cpu_seconds(server) - cpu) / max(1, served) * 1e6
                run.update(mode=mode, concurrency=concurrency)
                results["runs"].append(run)
                print(
                    f"{mode:9s} c={concurrency:<3d} {run['rps']:8.0f} req/s  p50 {run['p50']:.2f} ms  p95 {run['p95']:.2f} ms  "
                    f"p99 {run['p99']:.2f} ms  CPU {run['server_cpu_us']:.0f} µs/req  errors {run['errors']} {run['statuses'] or ''}",
                    flush=True,
                )
        print_table(results, env, args)
        print()
        print(metrics_line(port, key, sum(run["requests"] + run["warmup_requests"] for run in results["runs"] if run["mode"] != "healthz")))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
        if env["DATABASE_URL"].startswith("postgres"):
            from django.db import connections

            connections.close_all()
            name = env["DATABASE_URL"].rsplit("/", 1)[1]
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False
            )
        if args.keep:
            print(f"scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def print_table(results: dict, env: dict, args) -> None:
    bare = results["bare"]
    database = "PostgreSQL" if env["DATABASE_URL"].startswith("postgres") else "SQLite"
    cache = "Redis" if env.get("REDIS_URL") else "locmem"
    print()
    server = f"gunicorn {args.worker_class}, 1 worker, {args.threads} threads"
    shadow = "no shadow" if args.no_shadow else "shadow gbdt on every event"
    print(f"web: {server}; {database}, {cache}; log writer on; {shadow}")
    print(f"bare onnxruntime session.run (logreg, 1 row): p50 {bare['p50'] * 1000:.1f} µs, p99 {bare['p99'] * 1000:.1f} µs")
    print()
    print("| path | concurrency | req/s | p50 ms | p95 ms | p99 ms | p50 / bare p50 | server CPU µs/req | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in results["runs"]:
        print(
            f"| {run['mode']} | {run['concurrency']} | {run['rps']:.0f} | {run['p50']:.2f} | {run['p95']:.2f} | {run['p99']:.2f} "
            f"| {run['p50'] / bare['p50']:.0f}x | {run['server_cpu_us']:.0f} | {run['errors']} |"
        )


if __name__ == "__main__":
    main()
