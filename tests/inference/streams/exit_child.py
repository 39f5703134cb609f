"""Run by test_recorder_exit: hand the recorder a finished run, then exit at once (as a stopping server does)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

import django

django.setup()

from django.utils import timezone  # noqa: E402

from inference.streams.recorder import recorder  # noqa: E402

for index in range(int(os.environ["COUNT"])):
    recorder.submit(
        {
            "run_id": f"{os.environ['RUN_PREFIX']}-{index}",
            "product": "fraud_score",
            "event_id": f"exit-{index}",
            "features": {},
            "events": [{"event": "done"}],
            "created_at": timezone.now(),
        }
    )
sys.exit(0)
