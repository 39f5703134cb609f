"""A stream that ends just before its process stops is still recorded."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection

from audit.models import DualRunRecord

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgresql"),  # needs a database another process can reach
]


def test_records_queued_at_exit_are_written_before_the_process_ends():
    settings = connection.settings_dict
    prefix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}",
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "COUNT": "50",
        "RUN_PREFIX": prefix,
    }
    child = subprocess.run(
        [sys.executable, str(ROOT / "tests/inference/streams/exit_child.py")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert DualRunRecord.objects.filter(run_id__startswith=prefix).count() == 50
