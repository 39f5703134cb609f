"""Serving workers: what each serving process last said it serves (the rollout page's "Serving workers").

Each serving process reports from its runtime's background refresher (``inference/runtime.py``),
after every rebuild of its snapshot and at least every ``SERVING_WORKER_REPORT_SECONDS``; never
from a request. The rows are operational state, not a record: no history, no reason, and rows of
processes silent for ``SERVING_WORKER_FORGET_SECONDS`` are deleted by the next report of any process.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mlops.models import ServingWorker


@transaction.atomic
def serving_worker_report(*, worker: str, hostname: str, pid: int, started_at: datetime, generation: int, routes: dict) -> ServingWorker:
    """Record that ``worker`` ("<hostname>:<pid>") serves ``generation`` with ``routes`` now, and
    forget the processes that have not reported for ``SERVING_WORKER_FORGET_SECONDS``.

    ``routes``: per product ``{"production": label, "canary": label or None, "canary_percent": float,
    "shadow": label or None}``.
    """
    now = timezone.now()
    row, _ = ServingWorker.objects.update_or_create(
        worker=worker,
        defaults={"hostname": hostname, "pid": pid, "started_at": started_at, "seen_at": now, "generation": generation, "routes": routes},
    )
    ServingWorker.objects.filter(seen_at__lt=now - timedelta(seconds=settings.SERVING_WORKER_FORGET_SECONDS)).delete()
    return row
