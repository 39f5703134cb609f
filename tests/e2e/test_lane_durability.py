"""The hot lane (granian, `inference.lane`) under faults: a database outage and worker restarts
lose no answered prediction (every 200 has its log row). SIGTERM under load is in
test_log_durability.py, with the other servers.

Load comes from keep-alive clients (`test_log_durability.drive`); the lane runs as the Procfile's
`infer` process with two workers against this test's PostgreSQL database.
"""

import signal
import threading
import time
from pathlib import Path

import pytest

from audit.models import PredictionLog
from tests import faults, servers
from tests.e2e.test_log_durability import drive

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENTS = 4


@pytest.fixture
def key(production_model) -> str:
    from mlops.services import api_key_create

    return api_key_create(client="lane-durability", role="internal_service")[1]


@pytest.fixture
def features() -> dict:
    from mlops.demo import demo_feature_names

    return {name: 1.0 for name in demo_feature_names()}


def start_lane(tmp_path: Path, **env: str) -> servers.Server:
    environment = {
        **servers.PRODUCTION,
        "RATELIMIT_ENABLE": "0",
        "WEB_CONCURRENCY": "2",
        "AUDIT_SPILL_DIR": str(tmp_path / "spill"),
        "AUDIT_RETRY_INTERVAL": "0.2",  # probe the database often: the test waits for the replay
        "LOG_LEVEL": "WARNING",
        **env,
    }
    server = servers.start("granian", env=environment, log=tmp_path / "server.log")
    server.wait_until_every_worker_is_ready()
    return server


class Load:
    """CLIENTS keep-alive clients posting predictions until stopped: their 200s' ids, every status."""

    def __init__(self, port: int, key: str, features: dict):
        self.answered: list[str] = []
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=drive, args=(port, key, features, self._stop, self.answered, self.statuses, n)) for n in range(CLIENTS)
        ]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def wait_for_answers(self, more: int, within: float = 30) -> None:
        target = len(self.answered) + more
        deadline = time.monotonic() + within
        while len(self.answered) < target:
            assert time.monotonic() < deadline, f"only {len(self.answered)} of {target} answers within {within:g} s"
            time.sleep(0.05)


def unlogged(answered: list[str], within: float = 30) -> set[str]:
    """The answered ids without a log row once the writers have caught up (at most ``within`` s)."""
    deadline = time.monotonic() + within
    while True:
        logged = {str(pk) for pk in PredictionLog.objects.values_list("pk", flat=True)}
        missing = set(answered) - logged
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


def test_a_database_outage_under_load_loses_no_answered_prediction(key, features, tmp_path):
    server = start_lane(tmp_path)
    try:
        with Load(server.port, key, features) as load:
            load.wait_for_answers(200)
            with faults.database_down():
                answered_before = len(load.answered)
                load.wait_for_answers(500)  # answered while the log cannot be written: spilled
                answered_during = len(load.answered) - answered_before
            load.wait_for_answers(200)
        # The database is back: each worker's writer replays what it spilled, while it runs.
        missing = unlogged(load.answered, within=60)
    finally:
        server.stop(signal.SIGTERM, timeout=60)
    log = server.log.read_text()
    assert answered_during >= 500
    assert set(load.statuses) == {200}, log[-3000:]  # the outage never reached a client
    assert not missing, f"{len(missing)} of {len(load.answered)} answered predictions have no log row\n{log[-3000:]}"


def test_restarting_the_workers_under_load_loses_no_answered_prediction(key, features, tmp_path):
    server = start_lane(tmp_path)
    try:
        with Load(server.port, key, features) as load:
            load.wait_for_answers(200)
            server.process.send_signal(signal.SIGHUP)  # granian: respawn every worker, gracefully
            load.wait_for_answers(2000, within=60)  # through both replacements
    finally:
        server.stop(signal.SIGTERM, timeout=60)
    log = server.log.read_text()
    assert log.count("Stopped old worker") == 2, log[-3000:]
    # 503: a new worker asked before its models are loaded; never a 500.
    assert set(load.statuses) <= {200, 503}, log[-3000:]
    missing = unlogged(load.answered)
    assert not missing, f"{len(missing)} of {len(load.answered)} answered predictions have no log row\n{log[-3000:]}"
