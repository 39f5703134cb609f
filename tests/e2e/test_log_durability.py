"""SIGTERM to a real server under load: every 200 it sent has its prediction log row.

gunicorn starts with the repository's ``gunicorn.conf.py`` (two workers, four threads each),
daphne as the embedded default runs it (one process), against this test's PostgreSQL
database, with a long writer flush interval so that many answered records are still queued
when SIGTERM arrives: only the shutdown flush (gunicorn: ``worker_exit`` + ``atexit``;
daphne: ``atexit``) can write them.
"""

import http.client
import json
import signal
import threading
import time
from pathlib import Path

import pytest

from audit.models import PredictionLog
from tests import servers

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


# gunicorn with the repository's config flushes in worker_exit + atexit; daphne, the embedded
# default / stream process, stops Twisted on SIGTERM and flushes in atexit.
# granian is the hot lane (`inference.lane`): its workers flush in the application's __rsgi_del__.
SERVERS = ["daphne", "gunicorn", "granian"]


def start_server(tmp_path: Path, server: str) -> servers.Server:
    env = {
        **servers.PRODUCTION,
        "RATELIMIT_ENABLE": "0",
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "4",
        "AUDIT_FLUSH_INTERVAL": "30",  # records stay queued until the shutdown flush
        "AUDIT_BATCH_SIZE": "100000",
        "AUDIT_SPILL_DIR": str(tmp_path / "spill"),
        "LOG_LEVEL": "WARNING",
    }
    return servers.start(server, env=env, log=tmp_path / "server.log")


def drive(port: int, key: str, features: dict, stop: threading.Event, answered: list, statuses: list, worker: int) -> None:
    """Keep-alive client: POST /v1/infer until stopped or the server goes away."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    n = 0
    while not stop.is_set():
        n += 1
        body = json.dumps({"product": "fraud_score", "event_id": f"w{worker}-{n}", "features": features})
        try:
            connection.request("POST", "/v1/infer", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            if stop.is_set():
                return
            try:  # the worker closed this connection while shutting down; try another one
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.connect()
            except OSError:
                return  # the server stopped listening
            continue
        statuses.append(response.status)
        if response.status == 200:
            answered.append(json.loads(payload)["prediction_id"])


@pytest.mark.parametrize("server_name", SERVERS)
def test_sigterm_under_load_loses_no_answered_prediction(production_model, tmp_path, server_name):
    from mlops.demo import demo_feature_names
    from mlops.services import api_key_create

    _, key = api_key_create(client="durability", role="internal_service")
    features = {name: 1.0 for name in demo_feature_names()}
    server = start_server(tmp_path, server_name)
    port = server.port
    answered: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()
    clients = [threading.Thread(target=drive, args=(port, key, features, stop, answered, statuses, w)) for w in range(8)]
    try:
        for client in clients:
            client.start()
        time.sleep(3)
        in_flight_at_signal = len(answered)
        rows_at_signal = PredictionLog.objects.count()
        server.stop(signal.SIGTERM, timeout=60)
    finally:
        stop.set()
        server.stop(signal.SIGKILL)  # only if the test failed before the SIGTERM
        for client in clients:
            client.join(timeout=15)
    log = (tmp_path / "server.log").read_text()
    assert in_flight_at_signal > 50, log[-3000:]
    assert rows_at_signal < in_flight_at_signal  # the answers were still queued: the shutdown flush wrote them
    assert server.process.returncode in (0, -signal.SIGTERM) if server_name == "daphne" else server.process.returncode == 0, log[-3000:]
    # 503: a worker still warming its models right after start (readyz answered from the other);
    # never a 500, and never an answer without its row.
    assert set(statuses) <= {200, 503}, log[-3000:]
    logged = {str(pk) for pk in PredictionLog.objects.filter(product="fraud_score").values_list("pk", flat=True)}
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions have no log row\n{log[-3000:]}"
    print(f"{len(answered)} answered, {len(logged)} rows, {rows_at_signal} rows before SIGTERM")
    assert not list((tmp_path / "spill").glob("spill-*")), "the database was up: nothing should have been spilled"
