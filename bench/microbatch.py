"""Micro-batching on against off, in the same run (bench/README.md, "Micro-batching").

Two hot lanes (``granian --interface rsgi --workers 1 inference.lane.app:app``; with ``--server drf``
two DRF lanes, gunicorn with one gthread worker of 4 threads) on one throw-away
platform (``testbed.py``), pinned to the same core, wrk on the other: one with every model batched
(``INFERENCE_MICROBATCH_MODELS=*``, ``INFERENCE_MICROBATCH_MIN_RUN_US=0``), one with batching off
(``INFERENCE_MICROBATCH_MODELS=``). ``--env`` sets anything else for both (``MAX_ROWS``, ``MAX_WAIT_US``).
Two products, each with one model in production and no canary or shadow, so that the model run is
all that differs:

- ``fraud_score``: the gradient-boosting demo model (60 trees of depth 3);
- ``heavy_score``: a heavier one, a 256x256 MLP trained on the same bundled data set (skl2onnx;
  nothing downloaded).

Every (model, concurrency) cell runs on both lanes in turn, ``--rounds`` times, the order swapped
every round, each request its own feature vector. The table gives each lane's median round and the
median of the per-round ratios (on ÷ off, measured seconds apart), the machine being shared and
noisy; ``rows/call`` is the batched lane's ``mlops_inference_batch_rows`` over the cell.

Usage: ``.venv/bin/python bench/microbatch.py [--concurrency 8,64] [--rounds 3] [--duration 5]
[--warmup 1] [--server lane|drf] [--env NAME=VALUE] [--json FILE]``
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import load
import run
import servers
import testbed

HEAVY = "heavy_score"
MODELS = {"gbdt": run.PRODUCT, "mlp": HEAVY}  # the row label -> the product it is served for
LANES = {"on": {"INFERENCE_MICROBATCH_MODELS": "*", "INFERENCE_MICROBATCH_MIN_RUN_US": "0"}, "off": {"INFERENCE_MICROBATCH_MODELS": ""}}


def build_heavy_model(path: Path) -> Path:
    """A scaled 256x256 MLP on the demo's data set and features, as an ONNX file."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlops.demo import demo_feature_names

    features, target = load_breast_cancer(return_X_y=True)
    estimator = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=300, random_state=7))
    estimator.fit(features, 1 - target)
    model = to_onnx(estimator, features[:1].astype("float32"), options={"zipmap": False}, target_opset=17)
    entry = model.metadata_props.add()
    entry.key, entry.value = "feature_names", json.dumps(demo_feature_names())
    path.write_bytes(model.SerializeToString())
    return path


def configure(scratch: Path) -> None:
    """The headline platform reduced to one production model per product: gbdt and the MLP."""
    from django.db import connections

    from mlops import services
    from mlops.artifacts.stores import store_from_url
    from mlops.models import ModelVersion

    services.canary_stop(product=run.PRODUCT, user=None, reason="bench: production alone")
    services.shadow_disable(product=run.PRODUCT, user=None, reason="bench: production alone")
    gbdt = ModelVersion.objects.get(product=run.PRODUCT, name="gbdt", version="1")
    services.model_version_promote(model_version_id=gbdt.pk, user=None, reason="bench: gbdt in production")
    heavy = services.model_push(
        source=build_heavy_model(scratch / "heavy.onnx"), store=store_from_url(), product=HEAVY, name="mlp", version="1", threshold=0.5
    )
    services.model_version_validate(model_version_id=heavy.pk, user=None, reason="bench")
    services.model_version_promote(model_version_id=heavy.pk, user=None, reason="bench: the heavier model")
    connections.close_all()


def batch_rows(server: servers.Server, key: str) -> dict[str, tuple[float, float]]:
    """Per product: (session calls, rows) of ``mlops_inference_batch_rows``."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, slot in (("_count{", 0), ("_sum{", 1)):
            if line.startswith("mlops_inference_batch_rows" + suffix):
                product = line.split('product="', 1)[1].split('"', 1)[0]
                found.setdefault(product, [0.0, 0.0])[slot] += float(line.rsplit(" ", 1)[1])
    return {product: (calls, rows) for product, (calls, rows) in found.items()}


def start_lanes(kind: str, env: dict, scratch: Path, cpu: int | None) -> dict[str, servers.Server]:
    started: dict[str, servers.Server] = {}
    try:
        for name, settings in LANES.items():
            port = run._free_port()
            metrics_dir = scratch / f"prometheus-{name}"
            metrics_dir.mkdir()
            lane_env = {**os.environ, **env, **settings, "PYTHONPATH": str(run.ROOT), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
            command = run.lane_command(port) if kind == "lane" else run.drf_command()
            lane_env["WEB_BIND"] = f"127.0.0.1:{port}"
            log = scratch / f"{name}.log"
            started[name] = servers.start(name, command, port=port, ready_path="/readyz", env=lane_env, cwd=run.ROOT, log=log, cpu=cpu)
    except BaseException:
        for server in started.values():
            server.stop()
        raise
    return started


def render(cells: list[dict]) -> str:
    header = "| model | c | on req/s | off req/s | on ÷ off (median of rounds) | on p50 / p99 ms | off p50 / p99 ms "
    lines = [header + "| on / off CPU µs/req | rows/call | errors |", "|---|---|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        for concurrency in sorted({cell["concurrency"] for cell in cells}):
            rounds = [cell for cell in cells if cell["model"] == model and cell["concurrency"] == concurrency]
            if not rounds:
                continue
            by_round = {lane: sorted((c for c in rounds if c["lane"] == lane), key=lambda c: c["round"]) for lane in LANES}
            ratios = [on["rps"] / off["rps"] for on, off in zip(by_round["on"], by_round["off"], strict=True)]
            by_lane = {lane: sorted(lane_cells, key=lambda c: c["rps"]) for lane, lane_cells in by_round.items()}
            on, off = (by_lane[lane][len(by_lane[lane]) // 2] for lane in LANES)
            calls = sum(c["batch_calls"] for c in by_lane["on"])
            rows = sum(c["batch_rows"] for c in by_lane["on"])
            errors = sum(c["errors"] for c in rounds)
            lines.append(
                f"| {model} | {concurrency} | {on['rps']:,.0f} | {off['rps']:,.0f} | **{statistics.median(ratios):.2f}x** "
                f"({', '.join(f'{r:.2f}' for r in ratios)}) | {on['p50']:.2f} / {on['p99']:.2f} | {off['p50']:.2f} / {off['p99']:.2f} "
                f"| {on['server_cpu_us']:.0f} / {off['server_cpu_us']:.0f} | {rows / calls if calls else 0:.1f} | {errors} |"
            )
    return "\n".join(lines)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="8,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="measured seconds per cell and round")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured seconds before each (0: none)")
    parser.add_argument("--server", choices=("lane", "drf"), default="lane", help="the hot lane (granian) or the DRF lane (gunicorn)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated of " + ",".join(MODELS))
    parser.add_argument("--sqlite", action="store_true", help="use SQLite even when PostgreSQL is reachable")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment of both lanes")
    parser.add_argument("--json", help="also write every round of every cell to this file")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    if set(args.models) - set(MODELS):
        parser.error(f"models are {', '.join(MODELS)}")
    args.threads, args.worker_class = 4, "gthread"  # the DRF lane's gunicorn, as bench/run.py's defaults
    return args


def main() -> None:
    args = parse_args()
    load.wrk_program()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    scratch = Path(tempfile.mkdtemp(prefix="mlops-microbatch-"))
    env = testbed.prepare_environment(scratch, args)
    running: dict[str, servers.Server] = {}
    try:
        platform = testbed.bootstrap(env)
        configure(scratch)
        running = start_lanes(args.server, env, scratch, server_cpu)
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})
        vectors = run.Vectors(platform.rows)
        cells = []
        for model in args.models:
            workload = run.Workload(model, "lane", MODELS[model])
            for concurrency in args.concurrency:
                for round_ in range(args.rounds):
                    order = list(LANES) if round_ % 2 == 0 else list(reversed(LANES))
                    for lane in order:
                        server = running[lane]
                        before = batch_rows(server, platform.metrics_key).get(MODELS[model], (0.0, 0.0))
                        cell = run.measure(server, workload, concurrency, args, vectors, platform, load_cpu, scratch)
                        after = batch_rows(server, platform.metrics_key).get(MODELS[model], (0.0, 0.0))
                        cell.update(model=model, lane=lane, concurrency=concurrency, round=round_)
                        cell.update(batch_calls=after[0] - before[0], batch_rows=after[1] - before[1])
                        cells.append(cell)
                        print(
                            f"{model} c={concurrency} round {round_} {lane}: {cell['rps']:,.0f} req/s, p50 {cell['p50']:.2f} ms, "
                            f"p99 {cell['p99']:.2f} ms, {cell['server_cpu_us']:.0f} µs/req, load {cell['load_average']:.1f}",
                            flush=True,
                        )
        print()
        when = time.strftime("%Y-%m-%d %H:%M")
        print(f"{args.server}, {when}, load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds of {args.duration} s")
        print(render(cells))
        if args.json:
            Path(args.json).write_text(json.dumps({"settings": {k: v for k, v in vars(args).items()}, "cells": cells}, indent=2))
    finally:
        for server in running.values():
            server.stop()
        testbed.drop_database(env)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
