"""Redis dies under load: a real `web` server keeps answering inference with zero 5xx.

A throw-away ``redis-server`` on a free port is the server's only Redis (cache, shared
prediction-cache tier, rate-limit counters, configuration generation). Clients keep POSTing
``/v1/infer`` through keep-alive connections with a rate-limited key; the Redis process is
killed (SIGKILL) half-way. Documented direction: the prediction cache falls back to the
in-process tier and the rate limits fail *open* (served, counted in
``mlops_ratelimit_fail_open_total``), so every request still gets a 200.
"""

import http.client
import json
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.web_server import start_web

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def drive(port: int, key: str, rows: list[dict], stop: threading.Event, results: list, worker: int) -> None:
    """Keep-alive client: POST /v1/infer until stopped; records (monotonic time, status)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    n = 0
    while not stop.is_set():
        n += 1
        body = json.dumps({"product": "fraud_score", "event_id": f"w{worker}-{n}", "features": rows[(worker * 50 + n) % len(rows)]})
        try:
            connection.request("POST", "/v1/infer", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            results.append((time.monotonic(), f"connection error: {exc!r}"))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        results.append((time.monotonic(), response.status if response.status == 200 else (response.status, payload[:300])))
    connection.close()


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def test_killing_redis_under_load_costs_no_inference_request(production_model, redis_server, tmp_path):
    from sklearn.datasets import load_breast_cancer

    from mlops.demo import demo_feature_names
    from mlops.services import api_key_create

    redis_process, redis_url = redis_server
    _, key = api_key_create(client="redis-fault", role="inference_client")  # rate limited, unlike internal_service
    names = demo_feature_names()
    rows = [{name: float(value) for name, value in zip(names, row, strict=True)} for row in load_breast_cancer().data[:200]]
    port = free_port()
    server = start_web(tmp_path, port, redis_url)
    results: list = []
    stop = threading.Event()
    clients = [threading.Thread(target=drive, args=(port, key, rows, stop, results, worker)) for worker in range(4)]
    try:
        # One request first: concurrent first requests of a fresh worker race its API-key cache's
        # first load (reported to the security owner); this test is about Redis, not that.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/infer",
            data=json.dumps({"product": "fraud_score", "event_id": "warm-up", "features": rows[0]}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        for client in clients:
            client.start()
        time.sleep(1.5)
        redis_process.send_signal(signal.SIGKILL)
        redis_process.wait(timeout=10)
        killed_at = time.monotonic()
        time.sleep(3.0)
        stop.set()
        for client in clients:
            client.join(timeout=20)
        fail_open = _metric(port, "mlops_ratelimit_fail_open_total")
    finally:
        stop.set()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    log = (tmp_path / "server.log").read_text()
    before = [status for at, status in results if at < killed_at]
    after = [status for at, status in results if at >= killed_at]
    assert len(before) > 20 and len(after) > 20, (len(before), len(after), log[-3000:])
    not_ok = [(round(at - killed_at, 3), status) for at, status in results if status != 200]
    assert not not_ok, f"{len(not_ok)} of {len(results)} requests not answered 200, e.g. {not_ok[:5]}\n{log[-3000:]}"
    assert fail_open > 0, "the rate limiter never failed open: was Redis really in use?"
    print(f"{len(before)} answered before the kill, {len(after)} after; {fail_open:.0f} served without a limit check")
