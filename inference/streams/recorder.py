"""DualRunRecord persistence, off the event path, and the run-id memory behind idempotency.

A finished stream hands its record to `recorder.submit` (a queue put: never blocks, never
raises) after its last event is sent. One thread per process writes records (started by the
first submit of each process, `ProcessLocal`; its state is ``"writing"`` while records wait and
``"idle"`` once every submitted one is written or dropped), each with retries
(`resilience.retrying`: exponential backoff with jitter, ``STREAM_RECORD_ATTEMPTS`` attempts,
no circuit breaker: a record waits for the database rather than being refused at once); a
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
from collections import OrderedDict

from django.conf import settings
from django.db import IntegrityError, close_old_connections

from audit.redaction import Redactor
from inference.streams.metrics import DUAL_RECORDS
from mlops.background import resilience
from mlops.background.process import ProcessLocal

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


def _policy() -> resilience.Policy:
    # Up to a second of jitter per wait: spread out, the retries of a recorder whose database is
    # away for a few seconds still land after it is back.
    return resilience.Policy(
        attempts=settings.STREAM_RECORD_ATTEMPTS,
        initial_seconds=0.05,
        max_seconds=settings.STREAM_RECORD_MAX_WAIT_SECONDS,
        jitter_seconds=1.0,
    )


class Recorder:
    def __init__(self):
        self._fresh()
        self._flush_at_exit = False
        self.process = ProcessLocal("stream recorder", self._start, after_fork=self._fresh)

    def _fresh(self) -> None:
        """At construction and in a forked child: the parent's queue and runs are the parent's to record."""
        self._queue: queue.Queue = queue.Queue()
        self.memory = RunMemory()

    def submit(self, record: dict) -> None:
        self.memory.finish(record["run_id"], record["events"])
        self.process.ensure_started()
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
        return self.process.wait_until(lambda: not self._queue.unfinished_tasks, timeout=timeout)

    def _start(self) -> None:
        threading.Thread(target=self._run, name="dual-record-writer", daemon=True).start()
        self.process.set_state("idle")
        if not self._flush_at_exit:
            # A stream that ended just before the process stops is still recorded: the
            # exit waits (bounded) for the queue, as it does for the prediction log.
            atexit.register(self.flush, settings.STREAM_RECORD_SHUTDOWN_TIMEOUT)
            self._flush_at_exit = True

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            self.process.set_state("writing")
            try:
                self._write(record)
            except Exception:
                DUAL_RECORDS.labels("dropped").inc()
                logger.exception("dual run %s could not be recorded; dropped", record.get("run_id"), extra={"run_id": record.get("run_id")})
            finally:
                self._queue.task_done()
                close_old_connections()
                self.process.set_state("writing" if self._queue.unfinished_tasks else "idle")

    def _write(self, record: dict) -> None:
        from audit.models import DualRunRecord

        fields = {key: value for key, value in record.items() if key != "run_id"}
        retrying = resilience.retrying(
            _policy(),
            transient=_retryable,
            before_sleep=lambda state: (DUAL_RECORDS.labels("retried").inc(), close_old_connections()),
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
