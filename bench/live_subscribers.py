"""How many live subscribers one daphne (`stream`) process holds at 100 predictions/s.

The production topology of the live pages: the prediction log writer of the `web` processes
publishes each written batch to the channel-layer group ``predictions.<product>`` through
Redis; one daphne process serves ``/stream/live/<product>/`` to staff browsers. This script:

1. Prepares a throw-away platform: SQLite in a temporary folder (migrated), a staff user and a
   signed-in session, a unique Redis channel prefix (Redis on 127.0.0.1:6379 is required:
   the publisher is this process, as a `web` process would be).
2. Starts one daphne process (``mlops.asgi:application``, DEBUG off) on a loopback port,
   pinned to CPU 0 when there are two cores (this script on CPU 1).
3. Publishes 100 predictions per second, as the writer does (a batch of 20 every 200 ms,
   each record stamped with the time it was published).
4. Opens subscribers in steps (``--steps``), holds each step for ``--hold`` seconds and
   measures, over the step: events received, event lag (receive time - publish time: p50,
   p99, max), subscribers dropped, and daphne's RSS. A step is *held* when no subscriber
   dropped and the p99 lag stays under ``--max-lag`` seconds. Memory per subscriber is
   (RSS at the step - RSS with no subscriber) / subscribers.

Every subscriber gets what a browser would: with the default ``LIVE_MAX_EVENTS_PER_SECOND``
(20) the stream samples 100/s down to 20/s per subscriber; ``--per-subscriber 100`` measures
the unsampled case. Loopback only, a few hundred subscribers at most; stops by itself.

Usage: ``.venv/bin/python bench/live_subscribers.py [--steps 50,100,200,300] [--hold 6] [--json out.json]``.
"""

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project, for the publisher (a `web` process would be)
PRODUCT = "fraud_score"
RATE = 100  # predictions per second
BATCH_EVERY = 0.2  # seconds: the writer's flush interval


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def prepare(folder: Path, per_subscriber: int) -> dict:
    env = {
        **os.environ,
        "VAR_DIR": str(folder),
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "CHANNEL_PREFIX": f"bench-live-{secrets.token_hex(4)}",
        "CACHE_KEY_PREFIX": f"bench-live-{secrets.token_hex(4)}",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "LIVE_MAX_EVENTS_PER_SECOND": str(per_subscriber),
        "ROLLOUT_GUARD_IN_PROCESS": "0",
        "INFERENCE_BACKGROUND_REFRESH": "0",
        "AUDIT_SIGNAL_HANDLERS": "0",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DATABASE_URL", None)  # SQLite in the temporary folder
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.create_user("bench-staff", password=secrets.token_urlsafe(12), is_staff=True)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return {"env": env, "cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}"}


class Subscriber:
    def __init__(self):
        self.lags: list[float] = []
        self.events = 0
        self.open = False
        self.dropped = False
        self.error = ""

    async def run(self, port: int, cookie: str, ready: asyncio.Event) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = f"GET /stream/live/{PRODUCT}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
            self.open = True
            ready.set()
            marker = b'"created_at":"'
            while True:
                line = await reader.readline()
                if not line:
                    break
                start = line.find(marker)
                if start < 0 or not line.startswith(b"data:"):
                    continue
                start += len(marker)
                stamp = line[start : line.index(b'"', start)].decode()
                self.lags.append(time.time() - datetime.fromisoformat(stamp).timestamp())
                self.events += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # refused or cut: counted as dropped below
            self.error = repr(exc)
        finally:
            if self.open:
                self.dropped = True
            ready.set()


async def publish(stop: asyncio.Event) -> int:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    sent, started = 0, time.monotonic()
    per_batch = int(RATE * BATCH_EVERY)
    while not stop.is_set():
        now = datetime.now(UTC).isoformat()
        records = [
            {
                "prediction_id": secrets.token_hex(16),
                "event_id": f"bench-{sent + i}",
                "product": PRODUCT,
                "model_version_id": None,
                "role": "production",
                "score": 0.42,
                "decision": "allow",
                "latency_ms": 1.2,
                "cached": False,
                "fallback_reason": "",
                "primary_prediction_id": None,
                "score_diff": None,
                "diff_class": "",
                "decision_agrees": None,
                "created_at": now,
            }
            for i in range(per_batch)
        ]
        await layer.group_send(f"predictions.{PRODUCT}", {"type": "predictions.batch", "records": records})
        sent += per_batch
        next_at = started + (sent / RATE)
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


async def measure(port: int, pid: int, cookie: str, steps: list[int], hold: float, max_lag: float) -> list[dict]:
    stop = asyncio.Event()
    publisher = asyncio.create_task(publish(stop))
    await asyncio.sleep(1.0)
    baseline = rss_kib(pid)
    subscribers: list[Subscriber] = []
    tasks = []
    results = []
    try:
        for target in steps:
            while len(subscribers) < target:
                subscriber, ready = Subscriber(), asyncio.Event()
                subscribers.append(subscriber)
                tasks.append(asyncio.create_task(subscriber.run(port, cookie, ready)))
                await asyncio.wait_for(ready.wait(), 10)
            await asyncio.sleep(1.0)  # settle
            for subscriber in subscribers:
                subscriber.lags.clear()
                subscriber.events = 0
            cpu_before, own_before, wall_before = cpu_seconds(pid), time.process_time(), time.monotonic()
            await asyncio.sleep(hold)
            wall = time.monotonic() - wall_before
            server_cpu = (cpu_seconds(pid) - cpu_before) / wall
            client_cpu = (time.process_time() - own_before) / wall
            lags = [lag for subscriber in subscribers for lag in subscriber.lags]
            open_now = sum(1 for s in subscribers if s.open and not s.dropped)
            rss = rss_kib(pid)
            row = {
                "subscribers": target,
                "open": open_now,
                "events_per_second": round(sum(s.events for s in subscribers) / hold, 1),
                "lag_p50_ms": round(percentile(lags, 0.50) * 1000, 1),
                "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1),
                "lag_max_ms": round(max(lags) * 1000, 1) if lags else float("nan"),
                "rss_mib": round(rss / 1024, 1),
                "kib_per_subscriber": round((rss - baseline) / target, 1),
                "daphne_cpu": round(server_cpu, 2),
                "client_cpu": round(client_cpu, 2),
            }
            row["held"] = open_now == target and bool(lags) and row["lag_p99_ms"] <= max_lag * 1000
            results.append(row)
            print(
                f"{target:5d} subscribers  open {open_now:5d}  {row['events_per_second']:9.1f} ev/s  "
                f"lag p50 {row['lag_p50_ms']:7.1f} ms  p99 {row['lag_p99_ms']:7.1f} ms  max {row['lag_max_ms']:7.1f} ms  "
                f"RSS {row['rss_mib']:6.1f} MiB  {row['kib_per_subscriber']:6.1f} KiB/sub  "
                f"CPU daphne {row['daphne_cpu']:.2f} client {row['client_cpu']:.2f}  {'held' if row['held'] else 'NOT held'}",
                flush=True,
            )
            if not row["held"]:
                break
    finally:
        stop.set()
        await publisher
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [{"baseline_rss_mib": round(baseline / 1024, 1)}, *results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="25,50,100,200,300,400")
    parser.add_argument("--hold", type=float, default=6.0)
    parser.add_argument("--max-lag", type=float, default=1.0, help="seconds of p99 lag a held step may have")
    parser.add_argument("--per-subscriber", type=int, default=20, help="LIVE_MAX_EVENTS_PER_SECOND of the server")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    steps = sorted({int(step) for step in args.steps.split(",")})
    if max(steps) > 500:
        parser.error("at most 500 subscribers: this is a loopback benchmark, not a load test of the machine")

    folder = Path(tempfile.mkdtemp(prefix="bench-live-"))
    process = None
    try:
        prepared = prepare(folder, args.per_subscriber)
        port = free_port()
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mlops.asgi:application"]
        if shutil.which("taskset") and os.cpu_count() >= 2:
            command = ["taskset", "-c", "0", *command]
            os.sched_setaffinity(0, {1})
        process = subprocess.Popen(command, cwd=ROOT, env=prepared["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"daphne did not start: {process.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        print(
            f"daphne pid {process.pid}, {RATE} predictions/s published through Redis, "
            f"LIVE_MAX_EVENTS_PER_SECOND={args.per_subscriber}, hold {args.hold:g} s per step",
            flush=True,
        )
        results = asyncio.run(measure(port, process.pid, prepared["cookie"], steps, args.hold, args.max_lag))
        held = [row for row in results[1:] if row["held"]]
        if held:
            best = held[-1]
            print(
                f"held: {best['subscribers']} subscribers at {RATE} predictions/s, lag p99 {best['lag_p99_ms']} ms, "
                f"{best['kib_per_subscriber']} KiB RSS per subscriber"
            )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
