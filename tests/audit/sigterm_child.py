"""Run in a subprocess by test_shutdown: submit records through the default writer, then wait for SIGTERM.

Env: DATABASE_URL (the test database), MODEL_VERSION_ID, COUNT. The flush interval is long so
that the records are still queued when the signal arrives; only the shutdown flush writes them.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")
os.environ["AUDIT_FLUSH_INTERVAL"] = "60"
os.environ.setdefault("AUDIT_BATCH_SIZE", "100000")

import django

django.setup()

from audit import writer  # noqa: E402
from mlops.models import ModelVersion  # noqa: E402
from tests.audit.conftest import make_record  # noqa: E402

version = ModelVersion.objects.get(pk=os.environ["MODEL_VERSION_ID"])
for _ in range(int(os.environ["COUNT"])):
    writer.submit(make_record(version))
print("submitted", flush=True)
if os.environ.get("EXIT_NORMALLY"):
    sys.exit(0)  # atexit flushes
while True:
    time.sleep(1)
