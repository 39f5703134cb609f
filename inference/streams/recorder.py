"""DualRunRecord persistence, off the event path, and the run-id memory behind idempotency.

A finished stream hands its record to `recorder.submit` (a queue put: never blocks, never
raises) after its last event is sent. One thread per process writes records, each with
retries (tenacity: exponential backoff with jitter, ``STREAM_RECORD_ATTEMPTS`` attempts); a
record that still cannot be written is dropped, logged and counted
(``mlops_stream_dual_records{result="dropped"}``). A run id already in the table is a
duplicate, not an error. At process exit the queue is written first (at most
``STREAM_RECORD_SHUTDOWN_TIMEOUT`` seconds).

`recorder.recorded(run_id)` answers idempotent replays: the events of a run this process
finished recently (even before its row is written), else the stored row's events.
"""

import atexit
import logging
import queue
import threading
import time
from collections import OrderedDict

from django.conf import settings
from django.db import IntegrityError, close_old_connections
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from audit.redaction import Redactor
from inference.streams.metrics import DUAL_RECORDS

logger = logging.getLogger(__name__)


def redact_features(features: dict) -> dict:
    """The features as the prediction log would keep them (``AUDIT_REDACT_*`` settings)."""
    redactor = Redactor(
        drop=settings.AUDIT_REDACT_DROP,
        hash_keys=settings.AUDIT_REDACT_HASH,
        hash_key=settings.AUDIT_REDACT_HASH_KEY,
    )
    return redactor.redact({"features": features}).get("features", {}) if redactor.active else features


class RunMemory:
    """Run ids in flight and the events of recently finished runs, in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._finished: OrderedDict[str, list[dict]] = OrderedDict()

    def claim(self, run_id: str) -> bool:
        """False when the run id is already running or finished here."""
        with self._lock:
            if run_id in self._in_flight or run_id in self._finished:
                return False
            self._in_flight.add(run_id)
            return True

    def finish(self, run_id: str, events: list[dict]) -> None:
        with self._lock:
            self._in_flight.discard(run_id)
            self._finished[run_id] = events
            while len(self._finished) > settings.STREAM_RECENT_RUNS:
                self._finished.popitem(last=False)

    def state(self, run_id: str) -> tuple[str, list[dict] | None]:
        with self._lock:
            if run_id in self._in_flight:
                return "running", None
            events = self._finished.get(run_id)
            return ("finished", events) if events is not None else ("unknown", None)

    def reset(self) -> None:
        with self._lock:
            self._in_flight.clear()
            self._finished.clear()


def _retryable(exc: BaseException) -> bool:
    return not isinstance(exc, IntegrityError)


class Recorder:
    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._flush_at_exit = False
        self.memory = RunMemory()

    def submit(self, record: dict) -> None:
        self.memory.finish(record["run_id"], record["events"])
        self._ensure_thread()
        self._queue.put_nowait(record)

    def recorded(self, run_id: str) -> tuple[str, list[dict] | None]:
        """``("running", None)``, ``("finished", events)`` or ``("unknown", None)``. May read the database."""
        state, events = self.memory.state(run_id)
        if state != "unknown":
            return state, events
        from audit.models import DualRunRecord

        row = DualRunRecord.objects.filter(run_id=run_id).values_list("events", flat=True).first()
        return ("finished", row) if row is not None else ("unknown", None)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted record is written or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="dual-record-writer", daemon=True)
                self._thread.start()
                if not self._flush_at_exit:
                    # A stream that ended just before the process stops is still recorded: the
                    # exit waits (bounded) for the queue, as it does for the prediction log.
                    atexit.register(self.flush, settings.STREAM_RECORD_SHUTDOWN_TIMEOUT)
                    self._flush_at_exit = True

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            try:
                self._write(record)
            except Exception:
                DUAL_RECORDS.labels("dropped").inc()
                logger.exception("dual run %s could not be recorded; dropped", record.get("run_id"))
            finally:
                self._queue.task_done()
                close_old_connections()

    def _write(self, record: dict) -> None:
        from audit.models import DualRunRecord

        fields = {key: value for key, value in record.items() if key != "run_id"}
        retrying = Retrying(
            stop=stop_after_attempt(max(1, settings.STREAM_RECORD_ATTEMPTS)),
            wait=wait_exponential_jitter(multiplier=0.05, max=settings.STREAM_RECORD_MAX_WAIT_SECONDS),
            retry=retry_if_exception(_retryable),
            before_sleep=lambda state: (DUAL_RECORDS.labels("retried").inc(), close_old_connections()),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    DualRunRecord.objects.create(run_id=record["run_id"], **fields)
        except IntegrityError:
            if DualRunRecord.objects.filter(run_id=record["run_id"]).exists():
                DUAL_RECORDS.labels("duplicate").inc()
                return
            raise
        DUAL_RECORDS.labels("written").inc()


recorder = Recorder()
