"""The prediction log writer: the serving path hands records over without waiting; a background
thread inserts them in batches.

Public interface (used by `inference`):
- ``submit(record)``: non-blocking; ``record`` is a dict keyed by `PredictionLog` field names
  (``model_version_id``, ``fallback_from_id`` for foreign keys; ``prediction_id`` a UUID made by
  the caller; ``created_at`` an aware datetime).
- ``lookup(prediction_id)``: the record if this process still holds it (queued or just
  written), so a prediction can be read back before its batch reaches the database.
- ``flush(timeout)``: write everything queued so far; used on shutdown and by tests.
"""

import logging
import queue
import threading
import time
from collections import OrderedDict

from django.conf import settings
from django.db import close_old_connections

from audit.models import PredictionLog

logger = logging.getLogger(__name__)


class PredictionLogWriter:
    def __init__(self, *, batch_size: int, interval: float, max_queue: int, recent_size: int):
        self.batch_size = batch_size
        self.interval = interval
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._recent: OrderedDict = OrderedDict()
        self._recent_size = recent_size
        self._recent_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._start_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def _ensure_thread(self) -> None:
        import os

        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
                self._thread.start()

    def submit(self, record: dict) -> None:
        self._ensure_thread()
        with self._recent_lock:
            self._recent[record["prediction_id"]] = record
            while len(self._recent) > self._recent_size:
                self._recent.popitem(last=False)
        self._idle.clear()
        self._queue.put_nowait(record)

    def lookup(self, prediction_id) -> dict | None:
        with self._recent_lock:
            return self._recent.get(prediction_id)

    def flush(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.is_set():
                return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.interval
            while len(batch) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            self._write(batch)
            if self._queue.empty():
                self._idle.set()

    def _write(self, batch: list[dict]) -> None:
        close_old_connections()
        try:
            PredictionLog.objects.bulk_create([PredictionLog(**record) for record in batch], ignore_conflicts=True)
        except Exception:
            logger.exception("could not write %d prediction log records", len(batch))


_writer = PredictionLogWriter(
    batch_size=getattr(settings, "AUDIT_BATCH_SIZE", 500),
    interval=getattr(settings, "AUDIT_FLUSH_INTERVAL", 0.2),
    max_queue=getattr(settings, "AUDIT_QUEUE_MAX", 100_000),
    recent_size=getattr(settings, "AUDIT_RECENT_SIZE", 10_000),
)

submit = _writer.submit
lookup = _writer.lookup
flush = _writer.flush
