"""A shutdown ends within its one budget, even when the database never answers, and loses nothing:
what it could not write is in the spill file for replay."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 5.0  # AUDIT_SHUTDOWN_TIMEOUT of the child
COUNT = 300


@pytest.fixture
def silent_database():
    """A TCP server that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"postgres://postgres@127.0.0.1:{server.getsockname()[1]}/silent"


def spilled_ids(folder: Path) -> set[str]:
    ids = set()
    for path in folder.glob("spill-*"):
        ids.update(orjson.loads(line)["prediction_id"] for line in path.read_bytes().splitlines() if line.strip())
    return ids


@pytest.mark.parametrize(("signum", "expected_exit"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)])
def test_a_signal_with_a_silent_database_spills_everything_within_one_budget(silent_database, tmp_path, signum, expected_exit):
    env = {
        **os.environ,
        "DATABASE_URL": silent_database,
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "COUNT": str(COUNT),
        "AUDIT_SPILL_DIR": str(tmp_path / "spill"),
        "AUDIT_SHUTDOWN_TIMEOUT": str(BUDGET),
        "AUDIT_PUBLISH_LIVE": "0",
    }
    env.pop("REDIS_URL", None)
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/audit/hung_database_child.py")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "submitted", child.stderr.read()[-3000:] if child.poll() is not None else ""
        signalled = time.monotonic()
        child.send_signal(signum)
        child.wait(timeout=BUDGET * 4)
        elapsed = time.monotonic() - signalled
    finally:
        child.kill()
    stderr = child.stderr.read()
    assert child.returncode == expected_exit, stderr[-3000:]
    # One budget, not one per shutdown hook (SIGINT's handler and then atexit), with room for a loaded machine.
    assert elapsed < BUDGET + 3.5, (elapsed, stderr[-3000:])
    assert len(spilled_ids(tmp_path / "spill")) == COUNT, stderr[-3000:]
    # The one traceback allowed is Python's own report of SIGINT's KeyboardInterrupt in the child's loop.
    assert stderr.count("Traceback") == stderr.count("\nKeyboardInterrupt"), stderr[-3000:]
