"""The platform beside its peers, in one run (``make bench``).

1. Builds (once, cached in ``bench/.peers/``) the peers' virtualenv and starts the peers on the
   production model's ONNX file: a bare FastAPI + uvicorn + onnxruntime server
   (``peers/fastapi_server.py``) and KServe's Python model server, V1 protocol, one worker,
   gRPC and request logging off (``peers/kserve_server.py``).
2. Builds a throw-away platform (``testbed.py``: PostgreSQL, Redis, the demo, a canary at 10%,
   the gbdt shadowing 10% of events, a rate-limited API key) and starts its lanes as in
   production: the DRF lane (``gunicorn -c gunicorn.conf.py mlops.wsgi:application``, one
   worker) and, once it exists, the hot lane (``granian --interface rsgi ... inference.lane.app:app``).
3. Pins every server to CPU 0 and wrk (``load.py``) to CPU 1, then runs each (scenario,
   concurrency) cell on every server in turn, ``--rounds`` times, so that the machine's noise
   hits them all alike, and reports the median round of each cell (``report.py``): req/s,
   p50/p99, server CPU µs per request (the process and its children, from /proc), errors,
   the platform's ratios to each peer and the goals.

Scenarios: ``headline`` (the configuration above, every request its own feature vector, and
``/healthz`` on each lane as its floor), ``shadow100`` (the same with the shadow on every event)
and ``cached`` (one feature vector repeated).

Usage: ``.venv/bin/python bench/run.py [--servers fastapi,kserve,drf,lane] [--duration 5]
[--rounds 3] [--json results.json]``; ``--help`` lists the rest.
"""

import argparse
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import load
import report
import servers
import testbed
from peers.build import peer_python

ROOT = testbed.ROOT
PEERS = Path(__file__).resolve().parent / "peers"
BIN = Path(sys.executable).parent  # gunicorn and granian live next to the platform's python
PRODUCT, MODEL_NAME = "fraud_score", "fraud_score"
SCENARIOS = ("headline", "cached", "shadow100")
ALL_SERVERS = ("fastapi", "kserve", "drf", "lane")
LANES = ("drf", "lane")
WARMUP_BODIES = 3000  # distinct vectors cycled during warm-up (the measured run gets fresh ones)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lane_available() -> bool:
    return (BIN / "granian").exists() and ((ROOT / "inference" / "lane").is_dir() or (ROOT / "inference" / "lane.py").exists())


# --- Starting the servers -----------------------------------------------------------------------


def start_servers(names: list[str], platform: testbed.Platform, env: dict, scratch: Path, cpu: int | None) -> dict[str, servers.Server]:
    started: dict[str, servers.Server] = {}
    python = str(peer_python()) if {"fastapi", "kserve"} & set(names) else None
    platform_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    try:
        for name in names:
            port = _free_port()
            log = scratch / f"{name}.log"
            if name == "fastapi":
                command = [python, str(PEERS / "fastapi_server.py"), "--model-path", str(platform.model_path), "--port", str(port)]
                started[name] = servers.start(
                    name, command, port=port, ready_path="/healthz", env=os.environ.copy(), cwd=PEERS, log=log, cpu=cpu
                )
            elif name == "kserve":
                grpc_port = _free_port()
                command = [python, str(PEERS / "kserve_server.py"), "--model_path", str(platform.model_path)]
                command += ["--model_name", MODEL_NAME, "--http_port", str(port), "--grpc_port", str(grpc_port), "--workers", "1"]
                command += ["--enable_grpc", "false", "--enable_latency_logging", "false"]
                command += ["--log_config_file", str(PEERS / "kserve_logging.json")]
                ready = f"/v1/models/{MODEL_NAME}"
                started[name] = servers.start(
                    name, command, port=port, ready_path=ready, env=os.environ.copy(), cwd=PEERS, log=log, cpu=cpu
                )
                started[name].extra["grpc_port"] = grpc_port
            elif name == "drf":
                command = drf_command()
                server_env = {
                    **platform_env,
                    "WEB_BIND": f"127.0.0.1:{port}",
                    "PROMETHEUS_MULTIPROC_DIR": _fresh(scratch / "prometheus-drf"),
                }
                started[name] = servers.start(name, command, port=port, ready_path="/readyz", env=server_env, cwd=ROOT, log=log, cpu=cpu)
            elif name == "lane":
                command = lane_command(port)
                server_env = {**platform_env, "PROMETHEUS_MULTIPROC_DIR": _fresh(scratch / "prometheus-lane")}
                started[name] = servers.start(name, command, port=port, ready_path="/readyz", env=server_env, cwd=ROOT, log=log, cpu=cpu)
    except BaseException:
        for server in started.values():
            server.stop()
        raise
    return started


def drf_command() -> list[str]:
    """The DRF lane as the Procfile's ``web`` runs it; it binds to ``WEB_BIND`` of its environment."""
    return [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "mlops.wsgi:application"]


def lane_command(port: int) -> list[str]:
    """The hot lane as the Procfile's ``infer`` runs it, one worker."""
    command = [str(BIN / "granian"), "--interface", "rsgi", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return [*command, "inference.lane.app:app"]


def _fresh(folder: Path) -> str:
    folder.mkdir()
    return str(folder)


# --- The requests -------------------------------------------------------------------------------


class Vectors:
    """Feature vectors, each distinct from every other of the run (in float32 too).

    Vector ``n`` is row ``n % rows`` of the demo data set with one feature moved by a step that
    grows with ``n // rows``, so that consecutive requests differ in every feature, as real ones do.
    """

    def __init__(self, rows: list[list[float]]):
        self.rows, self.issued = rows, 0

    def take(self, count: int) -> list[list[float]]:
        out = []
        for n in range(self.issued, self.issued + count):
            row = list(self.rows[n % len(self.rows)])
            turn = n // len(self.rows)
            feature, step = turn % len(row), turn // len(row) + 1
            row[feature] += step * 1e-3 * (abs(row[feature]) + 1)
            out.append(row)
        self.issued += count
        return out


@dataclass
class Workload:
    scenario: str
    row: str  # the server, or "<lane>:healthz" for a lane's floor
    product: str = PRODUCT  # what the lanes' bodies ask for

    @property
    def server(self) -> str:
        return self.row.split(":")[0]


def make_target(workload: Workload, vectors: list[list[float]], platform: testbed.Platform) -> load.Target:
    json_type = {"Content-Type": "application/json"}
    if workload.row.endswith(":healthz"):
        return load.Target("GET", "/healthz")
    if workload.server == "kserve":
        bodies = [b'{"instances": [[' + ", ".join(f"{v:.7g}" for v in row).encode() + b"]]}" for row in vectors]
        return load.Target("POST", f"/v1/models/{MODEL_NAME}:predict", json_type, bodies)
    names = platform.feature_names
    salt = secrets.token_hex(3)
    bodies = []
    for i, row in enumerate(vectors):
        features = ", ".join(f'"{name}": {value:.7g}' for name, value in zip(names, row, strict=True))
        bodies.append(f'{{"event_id": "b{salt}-{i}", "product": "{workload.product}", "features": {{{features}}}}}'.encode())
    if workload.server == "fastapi":
        return load.Target("POST", "/infer", json_type, bodies)
    return load.Target("POST", "/v1/infer", {**json_type, "Authorization": f"Bearer {platform.key}"}, bodies)


def bodies_for(workload: Workload, count: int, vectors: Vectors, platform: testbed.Platform) -> load.Target:
    if workload.scenario == "cached":  # one vector, its own event ids: every request after the first hits the cache
        return make_target(workload, [platform.rows[0]] * min(count, 2000), platform)
    return make_target(workload, vectors.take(count), platform)


# --- One cell -----------------------------------------------------------------------------------


def measure(server: servers.Server, workload: Workload, concurrency: int, args, vectors: Vectors, platform, cpu, scratch) -> dict:
    estimate = 12_000.0  # req/s: more than any server here does on one core
    warm_requests = 0
    if args.warmup:
        warm = load.drive(server.port, bodies_for(workload, WARMUP_BODIES, vectors, platform), concurrency, args.warmup, cpu, scratch)
        estimate, warm_requests = max(warm["rps"], 100.0), warm["requests"]
    # Enough fresh bodies for the measured run with room to spare (the warm-up rate moves with the
    # machine's noise); `cycled` says if it was not enough.
    target = bodies_for(workload, int(max(estimate * 2.5, 2000) * args.duration) + 500, vectors, platform)
    before = server.cpu_seconds()
    result = load.drive(server.port, target, concurrency, args.duration, cpu, scratch)
    time.sleep(0.3)  # the log writer's and shadow's work for these requests is part of their cost
    result["server_cpu_us"] = (server.cpu_seconds() - before) / max(1, result["requests"]) * 1e6
    result["cycled"] = workload.scenario != "cached" and target.bodies is not None and result["requests"] > len(target.bodies)
    result["warmup_requests"] = warm_requests
    result["load_average"] = os.getloadavg()[0]
    return result


def plan(names: list[str], scenarios: list[str]) -> dict[str, list[Workload]]:
    rows = {}
    for scenario in scenarios:
        rows[scenario] = [Workload(scenario, name) for name in names]
        if scenario == "headline":  # the floor of each lane: the same server and stack doing no work
            rows[scenario] += [Workload(scenario, f"{name}:healthz") for name in names if name in LANES]
    return rows


def configure(scenario: str) -> None:
    testbed.set_shadow(100 if scenario == "shadow100" else 10)
    time.sleep(3)  # every serving process sees a configuration change within 2 s


def bare_onnxruntime(model_path: Path, row: list[float], seconds: float) -> dict:
    """``session.run`` of the production model in this process: the work every server wraps."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model_path.read_bytes(), sess_options=options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.array([row], dtype=np.float32)}
    for _ in range(1000):
        session.run(["probabilities"], feed)
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        session.run(["probabilities"], feed)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {"p50": samples[len(samples) // 2] * 1000, "p99": samples[int(len(samples) * 0.99)] * 1000}


def metrics_count(server: servers.Server, key: str) -> float:
    """``mlops_inference_requests_total`` of a lane's /metrics (multiprocess mode)."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("mlops_inference_requests_total{"))


def kserve_checks(server: servers.Server, lines_at_start: int) -> dict:
    """gRPC off: nothing listens on the gRPC port it was given. Request logs off: no new log lines."""
    try:
        with socket.create_connection(("127.0.0.1", server.extra["grpc_port"]), timeout=0.5):
            grpc_listening = True
    except OSError:
        grpc_listening = False
    return {"grpc_listening": grpc_listening, "log_lines_during_load": server.log_lines() - lines_at_start}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default="auto", help="comma-separated of fastapi,kserve,drf,lane; auto = all, lane once it exists")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated of " + ",".join(SCENARIOS))
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every cell, servers interleaved; the median is reported")
    parser.add_argument("--duration", type=int, default=5, help="measured seconds per cell and round")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured seconds before each (0: none)")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class of the DRF lane")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--sqlite", action="store_true", help="use SQLite even when PostgreSQL is reachable")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment of the platform's servers")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (server logs)")
    parser.add_argument("--json", help="also write every round of every cell to this file")
    args = parser.parse_args()
    if args.servers == "auto":
        args.servers = [name for name in ALL_SERVERS if name != "lane" or lane_available()]
        if "lane" not in args.servers:
            print("hot lane not found (inference/lane and granian next to python): running without it", flush=True)
    else:
        args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
        unknown = set(args.servers) - set(ALL_SERVERS)
        if unknown:
            parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
        if "lane" in args.servers and not lane_available():
            parser.error("the hot lane is not there yet: inference/lane and granian next to python are needed")
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    if set(args.scenarios) - set(SCENARIOS):
        parser.error(f"scenarios are {', '.join(SCENARIOS)}")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    return args


def main() -> None:
    args = parse_args()
    load.wrk_program()  # fail before building anything when wrk is missing
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    scratch = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    env = testbed.prepare_environment(scratch, args)
    running: dict[str, servers.Server] = {}
    try:
        platform = testbed.bootstrap(env)
        running = start_servers(args.servers, platform, env, scratch, server_cpu)
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})  # this harness waits on wrk's core, not the servers'
        log_lines = {name: server.log_lines() for name, server in running.items()}
        results = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "servers": args.servers,
            "settings": {k: v for k, v in vars(args).items() if k not in ("env",)},
            "environment": {
                "database": "PostgreSQL" if env["DATABASE_URL"].startswith("postgres") else "SQLite",
                "cache": "Redis" if env.get("REDIS_URL") else "locmem",
                "cpus": {"servers": server_cpu, "load": load_cpu},
            },
            "load_average": [os.getloadavg()[0]],
            "bare": bare_onnxruntime(platform.model_path, platform.rows[0], seconds=2.0),
            "cells": [],
        }
        vectors = Vectors(platform.rows)
        sent = dict.fromkeys(LANES, 0)
        in_flight = dict.fromkeys(LANES, 0)  # at most this many were cut off when each wrk run stopped
        for scenario, workloads in plan(args.servers, args.scenarios).items():
            configure(scenario)
            for concurrency in args.concurrency:
                for round_ in range(args.rounds):
                    shift = round_ % len(workloads)  # rotate the order too: no server always runs first
                    for workload in workloads[shift:] + workloads[:shift]:
                        cell = measure(running[workload.server], workload, concurrency, args, vectors, platform, load_cpu, scratch)
                        cell.update(scenario=scenario, row=workload.row, concurrency=concurrency, round=round_)
                        results["cells"].append(cell)
                        if workload.server in LANES and not workload.row.endswith(":healthz"):
                            sent[workload.server] += cell["requests"] + cell["warmup_requests"]
                            in_flight[workload.server] += concurrency * (2 if args.warmup else 1)
                        print(report.progress_line(cell), flush=True)
        results["checks"] = {"log_lines_during_load": {name: server.log_lines() - log_lines[name] for name, server in running.items()}}
        if "kserve" in running:
            results["checks"]["kserve"] = kserve_checks(running["kserve"], log_lines["kserve"])
        for lane in LANES:
            if lane in running:
                results["checks"][f"{lane}_metrics"] = {
                    "counted": metrics_count(running[lane], platform.metrics_key),
                    "completed": sent[lane],
                    "in_flight_at_most": in_flight[lane],
                }
        print()
        print(report.render(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        for server in running.values():
            server.stop()
        testbed.drop_database(env)
        if args.keep:
            print(f"scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
