"""Run in a subprocess by test_shutdown: submit records while the database accepts connections and
never answers, then wait for a signal. Env: DATABASE_URL (the silent server), COUNT, AUDIT_SPILL_DIR,
AUDIT_SHUTDOWN_TIMEOUT. Nothing here may touch the database itself: it would hang too."""

import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")
os.environ["AUDIT_FLUSH_INTERVAL"] = "60"  # the records stay queued until the shutdown
os.environ.setdefault("AUDIT_BATCH_SIZE", "100000")

import django

django.setup()

from audit import writer  # noqa: E402
from mlops.models import ModelVersion  # noqa: E402
from tests.audit.conftest import make_record  # noqa: E402

version = ModelVersion(id=uuid.uuid4(), product="fraud_score", threshold=0.5)  # never saved
for _ in range(int(os.environ["COUNT"])):
    writer.submit(make_record(version))
print("submitted", flush=True)
while True:
    time.sleep(1)
