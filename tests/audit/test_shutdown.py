"""A process that is told to stop writes what it holds: SIGTERM, SIGINT and normal exit flush the log."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from audit.models import PredictionLog

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("postgresql")  # needs a database another process can reach


def start_child(version, count: int, tmp_path, **extra_env) -> subprocess.Popen:
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}",
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "MODEL_VERSION_ID": str(version.pk),
        "COUNT": str(count),
        "AUDIT_SPILL_DIR": str(tmp_path / "spill"),
        "AUDIT_PUBLISH_LIVE": "0",
        **extra_env,
    }
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/audit/sigterm_child.py")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = child.stdout.readline()
    assert line.strip() == "submitted", child.stderr.read()[-3000:] if child.poll() is not None else line
    return child


@pytest.mark.parametrize(("signum", "expected_exit"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)])
def test_signal_flushes_queued_records(transactional_db, production_version, tmp_path, signum, expected_exit):
    child = start_child(production_version, 300, tmp_path)
    assert PredictionLog.objects.count() == 0  # still queued in the child
    child.send_signal(signum)
    child.wait(timeout=30)
    assert child.returncode == expected_exit, child.stderr.read()[-3000:]
    assert PredictionLog.objects.count() == 300


def test_normal_exit_flushes_queued_records(transactional_db, production_version, tmp_path):
    child = start_child(production_version, 200, tmp_path, EXIT_NORMALLY="1")
    child.wait(timeout=30)
    assert child.returncode == 0, child.stderr.read()[-3000:]
    assert PredictionLog.objects.count() == 200


def test_exit_with_live_publication_on_flushes_quietly(transactional_db, production_version, tmp_path):
    # Many small batches, so that the exit flush would hand the live publisher work while the
    # interpreter shuts down (it used to print "coroutine ... was never awaited" warnings).
    child = start_child(production_version, 3000, tmp_path, EXIT_NORMALLY="1", AUDIT_PUBLISH_LIVE="1", AUDIT_BATCH_SIZE="20")
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr[-3000:]
    assert PredictionLog.objects.count() == 3000
    assert "Traceback" not in stderr and "never awaited" not in stderr, stderr[-3000:]
