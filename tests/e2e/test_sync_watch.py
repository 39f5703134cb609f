"""`manage.py sync_models --watch` as an operator runs it: it rides out a model store outage."""

import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from mlops.artifacts.stores import sha256_of, store_from_url
from tests.servers import ROOT, free_port

pytestmark = pytest.mark.e2e
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class Lines:
    """The lines a child process prints on stdout and stderr, read as they come."""

    def __init__(self, process: subprocess.Popen):
        self.seen: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        for stream in (process.stdout, process.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.put(line.strip())

    def wait_for(self, text: str, timeout: float = 30) -> str:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line with {text!r} within {timeout} s; seen: {self.seen}")
            self.seen.append(line)
            if text in line:
                return line


def test_watch_rides_out_a_store_outage_and_registers_what_appeared(tmp_path, demo_model_files, monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps buckets in this process's memory across servers: a name no other test uses.
    bucket = f"watch-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    monkeypatch.setattr("django.conf.settings.AWS_ENDPOINT_URL", endpoint)
    store = store_from_url(f"s3://{bucket}/prefix")

    def push(name: str) -> None:
        path = Path(demo_model_files[name].path)
        store.put(path, "fraud_score", name, "1", {"sha256": sha256_of(path), "threshold": 0.5})

    push("logreg")
    env = {
        **os.environ,
        **CREDENTIALS,
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'watch.sqlite3'}",
        "VAR_DIR": str(tmp_path / "var"),
        "AWS_ENDPOINT_URL": endpoint,
        "S3_RETRY_ATTEMPTS": "1",  # one try per sync: the watch's own backoff is under test
        "S3_BREAKER_RESET_SECONDS": "1",  # and a circuit that lets a trial call through soon after the store is back
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    watcher = subprocess.Popen(
        [sys.executable, "manage.py", "sync_models", "--watch", "0.2", "--store", f"s3://{bucket}/prefix"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = Lines(watcher)
    try:
        lines.wait_for("registered fraud_score/logreg@1")
        server.stop()
        lines.wait_for("is unreachable, retrying")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()  # the same in-process S3 state: the bucket and logreg are still there
        push("gbdt")
        lines.wait_for("registered fraud_score/gbdt@1")
        lines.wait_for("is reachable again")  # said once that sync is through
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0
        lines.wait_for("stopped")
    finally:
        watcher.kill()
        server.stop()
    assert sum("unreachable" in line for line in lines.seen) == 1, lines.seen
    assert not any("Traceback" in line for line in lines.seen), lines.seen
