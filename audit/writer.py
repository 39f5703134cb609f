"""The prediction log writer: the serving path hands records over without waiting; a background
thread inserts them in batches, spills them to disk when the database is away, and replays
the spill when it is back.

Public interface (used by `inference`):
- ``submit(record)``: non-blocking; ``record`` is a dict keyed by `PredictionLog` field names
  (``model_version_id``, ``fallback_from_id`` for foreign keys; ``prediction_id`` a UUID made by
  the caller; ``created_at`` an aware datetime). The caller's thread only appends to a deque
  (about 1-2 µs); redaction (``AUDIT_REDACT_DROP`` / ``AUDIT_REDACT_HASH``) runs on the writer
  thread, before anything is written or spilled.
- ``lookup(prediction_id)``: the (redacted) record if this process still holds it (queued or
  just written), so a prediction can be read back before its batch reaches the database.
- ``flush(timeout)``: write everything queued so far; used on shutdown and by tests.

Batching: a batch closes after ``AUDIT_FLUSH_INTERVAL`` (0.2 s) or ``AUDIT_BATCH_SIZE`` (500)
records, whichever comes first; on PostgreSQL it goes in by COPY (see `audit.logstore` for the
measurement), elsewhere by ``bulk_create``.

Queue full (``AUDIT_QUEUE_MAX`` records, a soft bound, default 100,000: the writer is stuck behind a
database that hangs rather than fails): the submitting thread appends the record to the spill
file itself, without fsync, waiting at most ``AUDIT_OVERFLOW_LOCK_TIMEOUT`` (50 ms) for the
spill lock; it counts ``audit_log_spilled_total{reason="queue_full"}``. Only if that fails too
(the lock stays busy, or the disk refuses) is the record dropped: counted in
``audit_log_dropped_total{reason=...}`` and logged (at most one warning line per 10 s, with the
count since the last line). The request thread is never blocked indefinitely.

Database unavailable: the failed batch, and every batch until a probe of the database succeeds,
is appended to the spill file (fsynced per batch; rotated at
``AUDIT_SPILL_MAX_BYTES``, default 50 MB; folder ``AUDIT_SPILL_DIR``). Probes come
``AUDIT_RETRY_INTERVAL`` (2 s) plus up to as much jitter apart (the writer's own
`mlops.background.resilience.circuit`); the state is
``mlops_circuit_state{dependency="prediction_log"}`` (2 while spilling). The first batch that
gets in again closes the spill file, and the writer replays every closed spill file of the
folder (idempotently: ``ON CONFLICT (prediction_id, created_at) DO NOTHING``). ``manage.py audit_replay``
does the same by hand. Records the database refuses for their content (a foreign key to a
missing model version, a missing field) are retried one by one and the bad ones kept in
``AUDIT_SPILL_DIR/rejected/`` with a log line; they would never get in by retrying.

The writer thread starts with the first ``submit`` of each process (`ProcessLocal`: a forked
child drops the parent's queue, thread and spill file). Its state says what its last cycle
did: ``"idle"`` (started, nothing written yet), ``"writing"`` (a batch in hand), ``"queued"``
(records wait for the next batch), ``"spilling"`` (the database is away: batches go to the
spill file until a probe gets in), ``"replaying"`` (the database is back, the spill is not in
yet) or ``"flushed"`` (everything it was given and took is in the database).

Shutdown: ``shutdown()`` flushes (at most ``AUDIT_SHUTDOWN_TIMEOUT`` s, default 10) and closes
the spill file. It runs from ``atexit`` in every process, from SIGTERM/SIGINT handlers that
chain to the previous handler (installed by the first ``submit`` made on the main thread,
e.g. a script or management command), and from gunicorn's ``worker_exit`` hook
(``gunicorn.conf.py``, which also turns the signal handlers off: gunicorn's worker owns its
signals and finishes its in-flight requests first). Daphne: Twisted installs its own handlers
when the reactor starts and exits cleanly on SIGTERM, so ``atexit`` does the flush. Graceful
timeouts: gunicorn ``graceful_timeout`` (30 s in ``gunicorn.conf.py``) must exceed the longest
request plus ``AUDIT_SHUTDOWN_TIMEOUT``; for daphne give the process manager's stop timeout
(systemd ``TimeoutStopSec``, Kubernetes ``terminationGracePeriodSeconds``, default 30 s)
the same margin over daphne's ``--application-close-timeout`` (10 s).
"""

import atexit
import logging
import os
import signal
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import DataError, IntegrityError

from audit import spill
from audit.logstore import RecordError, store_for
from audit.metrics import (
    BATCH_SIZE,
    DROPPED,
    QUEUE_DEPTH,
    QUEUED,
    REJECTED,
    REPLAYED,
    SPILLED,
    WRITE_SECONDS,
    WRITTEN,
)
from audit.publish import Publisher
from audit.redaction import Redactor
from mlops.background import resilience
from mlops.background.process import STOPPED, ProcessLocal

logger = logging.getLogger(__name__)
CIRCUIT = "prediction_log"  # the writer's dependency in mlops_circuit_state
SHUTDOWN_LOCK_SECONDS = 1.0  # the longest a shutdown waits for the spill file's lock


def _is_data_error(exc: BaseException) -> bool:
    """True when retrying ``exc`` can never help: the records themselves are wrong."""
    if isinstance(exc, RecordError | IntegrityError | DataError | TypeError | ValueError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, psycopg.IntegrityError | psycopg.DataError)


@dataclass
class ReplayResult:
    path: Path
    records: int = 0
    inserted: int = 0
    bad_lines: int = 0
    rejected: int = 0
    error: str | None = None


def _insert_or_reject(store, records: list[dict], *, spill_dir: Path, source: str) -> tuple[int, int]:
    """Insert ``records`` idempotently; on a data error, one by one, keeping the refused ones.

    Returns ``(inserted, rejected)``; connection errors propagate to the caller.
    """
    try:
        return store.insert(records, idempotent=True), 0
    except Exception as exc:
        if not _is_data_error(exc):
            raise
    inserted = rejected = 0
    for record in records:
        try:
            inserted += store.insert([record], idempotent=True)
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            rejected += 1
            REJECTED.inc()
            path = spill.write_rejected(spill_dir, source, [spill.dumps(record)])
            logger.error("prediction log record %s refused by the database (%s); kept in %s", record.get("prediction_id"), exc, path)
    return inserted, rejected


def replay_file(path: Path, *, store, spill_dir: Path, chunk: int = 500) -> ReplayResult:
    """Put one spill file's records into the database and delete it; idempotent.

    The file is claimed first (renamed), so concurrent replayers never share it. On a
    connection failure it is released for a later attempt and ``error`` says why.
    """
    result = ReplayResult(path=Path(path))
    claimed = spill.claim(Path(path))
    if claimed is None:
        result.error = "taken by another process"
        return result
    try:
        for records, bad in spill.read_records(claimed, chunk=chunk):
            if bad:
                result.bad_lines += len(bad)
                kept = spill.write_rejected(spill_dir, "unreadable", [line.raw for line in bad])
                logger.error(
                    "%d unreadable lines in %s (first: line %d, %s); kept in %s", len(bad), path, bad[0].line_number, bad[0].error, kept
                )
            if records:
                inserted, rejected = _insert_or_reject(store, records, spill_dir=spill_dir, source="replay")
                result.records += len(records)
                result.inserted += inserted
                result.rejected += rejected
                REPLAYED.inc(len(records))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        try:
            spill.release(claimed)
        except OSError:
            logger.exception("could not release spill file %s", claimed)
        return result
    claimed.unlink()
    return result


class PredictionLogWriter:
    """One per process; see the module docstring for the policies."""

    def __init__(
        self,
        *,
        batch_size: int = 500,
        interval: float = 0.2,
        max_queue: int = 100_000,
        recent_size: int = 10_000,
        spill_dir: Path,
        spill_max_bytes: int = 50 * 1024 * 1024,
        retry_interval: float = 2.0,
        replay_interval: float = 5.0,
        overflow_lock_timeout: float = 0.05,
        shutdown_timeout: float = 10.0,
        redactor: Redactor | None = None,
        publisher: Publisher | None = None,
        write_method: str | None = None,
        using: str = "default",
    ):
        self.batch_size = batch_size
        self.interval = interval
        self.max_queue = max_queue
        self.recent_size = recent_size
        self.spill_dir = Path(spill_dir)
        self.spill_max_bytes = spill_max_bytes
        self.retry_interval = retry_interval
        self.replay_interval = replay_interval
        self.overflow_lock_timeout = overflow_lock_timeout
        self.shutdown_timeout = shutdown_timeout
        self.redactor = redactor or Redactor()
        self.publisher = publisher
        self.write_method = write_method
        self.using = using
        self.install_signal_handlers = True
        self._reset()
        self.process = ProcessLocal("prediction log writer", self._start, after_fork=self._reset)

    def _reset(self) -> None:
        """Fresh runtime state: at construction and in a forked child (locks, thread, files)."""
        # A deque, not a queue.Queue: append is one atomic C call and wakes nobody, so the
        # request thread pays no lock hand-off per record; the writer thread wakes on its
        # interval, or early through ``_wake`` when a batch is full or a flush is asked for.
        self._buffer: deque = deque()
        self._in_flight: list[dict] = []  # the batch the writer thread is writing
        self._shutdown_deadline: float | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._recent: OrderedDict = OrderedDict()
        self._recent_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._store = None
        # While open, batches go straight to the spill. The probe interval stays short: spilled
        # records are safe, but the sooner the log is back the less there is to replay.
        self._circuit = resilience.circuit(CIRCUIT, probe_seconds=self.retry_interval)
        self._down_since: float | None = None  # time.monotonic() of the outage's first failure, for the log lines
        self._next_replay_check = 0.0
        self._replay_pending = False  # this writer closed a spill file that is not replayed yet
        self._spill = spill.SpillFile(self.spill_dir, max_bytes=self.spill_max_bytes)
        self._overflow_count = 0
        self._overflow_logged_at = 0.0

    # --- the request side -------------------------------------------------------------------
    def submit(self, record: dict) -> None:
        self.process.ensure_started()
        with self._recent_lock:
            self._recent[record["prediction_id"]] = record  # as given (a UUID from `inference`)
            if len(self._recent) > self.recent_size:
                self._recent.popitem(last=False)
        buffer = self._buffer
        if len(buffer) >= self.max_queue:  # a soft bound: racing submitters may pass it by a few
            self._overflow(record)
            return
        buffer.append(record)
        QUEUED.inc()
        if len(buffer) >= self.batch_size:
            self._wake.set()

    def lookup(self, prediction_id) -> dict | None:
        with self._recent_lock:
            record = self._recent.get(prediction_id)
            if record is None:  # asked with the other spelling (str vs UUID) of the id
                try:
                    other = str(prediction_id) if isinstance(prediction_id, uuid.UUID) else uuid.UUID(str(prediction_id))
                except ValueError:
                    return None
                record = self._recent.get(other)
        return self.redactor.redact(record) if record is not None else None

    def queue_depth(self) -> int:
        return len(self._buffer)

    def _overflow(self, record: dict) -> None:
        if self._spill.lock.acquire(timeout=self.overflow_lock_timeout):
            try:
                self._spill.append([self.redactor.redact(record)], fsync=False)
                SPILLED.labels("queue_full").inc()
                outcome = "spilled"
            except OSError:
                DROPPED.labels("spill_failed").inc()
                outcome = "dropped (spill failed)"
            finally:
                self._spill.lock.release()
        else:
            DROPPED.labels("queue_full").inc()
            outcome = "dropped (spill busy)"
        self._overflow_count += 1
        now = time.monotonic()
        if now - self._overflow_logged_at >= 10.0:
            logger.warning(
                "prediction log queue full (%d records); %d records overflowed since the last report, last one %s",
                self.max_queue,
                self._overflow_count,
                outcome,
            )
            self._overflow_logged_at = now
            self._overflow_count = 0

    # --- lifecycle ----------------------------------------------------------------------------
    def _start(self) -> None:
        install_shutdown_hooks(self)
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()
        self.process.set_state("idle")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far is written or spilled; False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            self._drain_here()
            return True
        deadline = time.monotonic() + timeout

        def settled() -> bool:
            return not self._buffer and self.process.state != "writing"

        while not settled():
            self._wake.set()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.error("prediction log flush timed out with %d records unwritten", len(self._buffer))
                return False
            self.process.wait_until(settled, timeout=min(remaining, 0.05))
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then close the spill file so that any process can replay it.

        A shutdown has one budget (``shutdown_timeout``), however many hooks call this: SIGINT's
        handler and then ``atexit`` must not take two, because a pod's grace period is finite.
        What is still unwritten when it runs out (queued, or held by the writer thread while the
        database does not answer) is spilled from this thread instead of lost; replaying a record
        the database got after all inserts nothing. Locks are taken with a bound too: a signal
        handler runs on the main thread, which may itself hold the spill lock at that moment.
        """
        if self._shutdown_deadline is None:
            self._shutdown_deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        done = self.flush(max(0.0, self._shutdown_deadline - time.monotonic()))
        if done:
            self._shutdown_deadline = None  # a later shutdown (after more submits) gets its own budget
        else:
            self._spill_unwritten()
        if self._spill.lock.acquire(timeout=SHUTDOWN_LOCK_SECONDS):
            try:
                self._spill.close()
            except OSError:
                logger.exception("could not close the spill file")
            finally:
                self._spill.lock.release()
        else:
            logger.error("the spill file is busy; left open (a later replay still reads it)")
        return done

    def _spill_unwritten(self) -> None:
        records, self._in_flight = list(self._in_flight), []  # spilled once, even if another hook runs out of time too
        while True:  # popleft, not a copy and clear: a request thread may still be appending
            try:
                records.append(self._buffer.popleft())
            except IndexError:
                break
        if not records:
            return
        if not self._spill.lock.acquire(timeout=SHUTDOWN_LOCK_SECONDS):
            DROPPED.labels("spill_failed").inc(len(records))
            logger.error("prediction log shutdown: the spill file stayed busy; %d unwritten records are lost", len(records))
            return
        try:
            self._spill.append([self.redactor.redact(record) for record in records])
        except OSError:
            DROPPED.labels("spill_failed").inc(len(records))
            logger.exception("could not spill %d prediction log records to %s: they are lost", len(records), self.spill_dir)
            return
        finally:
            self._spill.lock.release()
        SPILLED.labels("shutdown").inc(len(records))
        logger.warning("prediction log shutdown: %d records not written in time, spilled for replay", len(records))

    def _take_batch(self) -> list[dict]:
        buffer, batch = self._buffer, []
        try:
            while len(batch) < self.batch_size:
                batch.append(buffer.popleft())
        except IndexError:
            pass
        return batch

    def _drain_here(self) -> None:
        """No writer thread (not started, or died): write what is queued from the caller's thread."""
        while batch := self._take_batch():
            self._write_or_spill(batch)

    # --- the writer thread --------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> bool:
        """Shut down and stop the writer thread (tests, and embedding code that owns a writer)."""
        done = self.shutdown(timeout)
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.process.set_state(STOPPED)  # what is submitted later is written by `flush`, on its caller's thread
        return done

    def _run(self) -> None:
        try:
            while not self._stopping:
                try:
                    self._cycle()
                except Exception:  # the thread must outlive any bug in one cycle
                    logger.exception("prediction log writer cycle failed")
                    time.sleep(0.5)
        finally:
            self._close_store()  # on this thread: the ORM store's connection is this thread's Django connection

    def _cycle(self) -> None:
        # Sleep for the batch interval unless a full batch or a flush wakes us first.
        if len(self._buffer) < self.batch_size:
            self._wake.wait(self.interval)
        self._wake.clear()
        QUEUE_DEPTH.set(len(self._buffer))
        if self._buffer:  # "writing" before the first record leaves the buffer: `flush` relies on it
            self.process.set_state("writing")
            try:
                batch = self._take_batch()
                while batch:
                    self._in_flight = batch  # a shutdown that runs out of time spills it (`_spill_unwritten`)
                    try:
                        self._write_or_spill(batch)
                    except Exception:  # a bug must not cost the batch: keep it on disk for replay
                        logger.exception("prediction log writer failed on a batch of %d; spilling it", len(batch))
                        self._spill_batch(batch, reason="writer_error")
                    finally:
                        self._in_flight = []
                    # Keep going only with full batches; a remainder waits for the next interval.
                    batch = self._take_batch() if len(self._buffer) >= self.batch_size else []
            finally:
                self._settle_state()
        self._maybe_replay()
        self._settle_state()

    def _settle_state(self) -> None:
        if self._down_since is not None:
            state = "spilling"
        elif self._buffer:
            state = "queued"
        else:
            state = "replaying" if self._replay_pending else "flushed"
        self.process.set_state(state)

    def _get_store(self):
        if self._store is None:
            self._store = store_for(using=self.using, method=self.write_method)
        return self._store

    def _write_or_spill(self, batch: list[dict]) -> None:
        # Redaction happens here, on the writer thread, before anything is persisted or spilled;
        # the request thread only appends. HMAC hashing is deterministic, so ``lookup`` (which
        # redacts the same way) shows what the database holds.
        if self.redactor.active:
            batch = [self.redactor.redact(record) for record in batch]
        try:
            inserted = self._circuit.call("write", partial(self._store_batch, batch), retry=False)
        except resilience.DependencyUnavailable:  # down, and no probe due yet
            self._spill_batch(batch, reason="db_unavailable")
            return
        except Exception as exc:
            self._database_down(exc)
            self._spill_batch(batch, reason="db_unavailable")  # replays skip the rows already in
            return
        WRITTEN.inc(inserted)
        self._database_up()
        if self.publisher is not None:
            self.publisher.publish(batch)

    def _store_batch(self, batch: list[dict]) -> int:
        """Insert ``batch``, setting aside one by one the records refused for their content;
        the rows inserted. Anything raised means the database failed the batch."""
        started = time.perf_counter()
        try:
            self._insert(batch)
        except Exception as exc:
            if self._store is None or not _is_data_error(exc):
                raise
            inserted, _ = _insert_or_reject(self._store, batch, spill_dir=self.spill_dir, source="write")
            return inserted
        WRITE_SECONDS.observe(time.perf_counter() - started)
        BATCH_SIZE.observe(len(batch))
        return len(batch)

    def _insert(self, batch: list[dict]) -> None:
        """Insert with the writer's connection. A connection that died while idle (the database
        restarted or failed over) gets one retry on a fresh connection before the database
        counts as down: otherwise every restart would spill a batch and wait for a probe."""
        try:
            self._get_store().insert(batch)
        except Exception as exc:
            if _is_data_error(exc):
                raise
            self._close_store()
            self._get_store().insert(batch)  # a transaction: the failed attempt left nothing behind

    def _close_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception:
                logger.debug("closing the log store failed", exc_info=True)
            self._store = None

    def _database_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning("prediction log database unavailable (%s: %s); spilling to %s", type(exc).__name__, exc, self.spill_dir)
        self._circuit.trip()  # (again): the next probe is one interval from this failure
        self._close_store()

    def _spill_batch(self, batch: list[dict], *, reason: str) -> None:
        with self._spill.lock:
            try:
                self._spill.append(batch)
            except OSError:
                DROPPED.labels("spill_failed").inc(len(batch))
                logger.exception("could not spill %d prediction log records to %s: they are lost", len(batch), self.spill_dir)
                return
        SPILLED.labels(reason).inc(len(batch))

    def _database_up(self) -> None:
        if self._down_since is not None:
            logger.warning("prediction log database is back after %.1f s; replaying the spill", time.monotonic() - self._down_since)
            self._down_since = None
        if self._spill.is_open:
            with self._spill.lock:
                self._spill.close()
            self._replay_pending = True
            self._next_replay_check = 0.0  # replay right away

    def _maybe_replay(self) -> None:
        if self._down_since is not None:
            # Probe while idle too: the spill must come back even if no new batch arrives.
            try:
                self._circuit.call("probe", lambda: self._get_store().ping(), retry=False)
            except resilience.DependencyUnavailable:  # no probe due yet
                return
            except Exception as exc:
                self._database_down(exc)
                return
            self._database_up()
        if time.monotonic() < self._next_replay_check:
            return
        self._next_replay_check = time.monotonic() + self.replay_interval
        for path in spill.replayable(self.spill_dir):
            result = replay_file(path, store=self._get_store(), spill_dir=self.spill_dir, chunk=self.batch_size)
            if result.error:
                if result.error != "taken by another process":
                    self._database_down(RuntimeError(result.error))
                    return
                continue
            logger.info("replayed %d prediction log records from %s (%d new)", result.records, path.name, result.inserted)
        self._replay_pending = False


# --- shutdown hooks -------------------------------------------------------------------------
_hooked: dict[int, set[int]] = {}  # pid -> ids of writers whose hooks are installed


def install_shutdown_hooks(writer: PredictionLogWriter) -> None:
    """``atexit`` always; SIGTERM/SIGINT handlers when called on the main thread and allowed."""
    hooked = _hooked.setdefault(os.getpid(), set())
    if id(writer) in hooked:
        return
    hooked.add(id(writer))
    atexit.register(writer.shutdown)
    if not writer.install_signal_handlers or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        signal.signal(signum, _chained_handler(writer, previous))


def _chained_handler(writer: PredictionLogWriter, previous):
    def handler(signum, frame):
        writer.shutdown()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL (or unknown): die by the signal, as the process would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


def writer_from_settings() -> PredictionLogWriter:
    return PredictionLogWriter(
        batch_size=settings.AUDIT_BATCH_SIZE,
        interval=settings.AUDIT_FLUSH_INTERVAL,
        max_queue=settings.AUDIT_QUEUE_MAX,
        recent_size=settings.AUDIT_RECENT_SIZE,
        spill_dir=Path(settings.AUDIT_SPILL_DIR),
        spill_max_bytes=settings.AUDIT_SPILL_MAX_BYTES,
        retry_interval=settings.AUDIT_RETRY_INTERVAL,
        replay_interval=settings.AUDIT_REPLAY_INTERVAL,
        overflow_lock_timeout=settings.AUDIT_OVERFLOW_LOCK_TIMEOUT,
        shutdown_timeout=settings.AUDIT_SHUTDOWN_TIMEOUT,
        redactor=Redactor(
            drop=settings.AUDIT_REDACT_DROP,
            hash_keys=settings.AUDIT_REDACT_HASH,
            hash_key=settings.AUDIT_REDACT_HASH_KEY,
        ),
        publisher=Publisher() if settings.AUDIT_PUBLISH_LIVE else None,
        write_method=settings.AUDIT_WRITE_METHOD or None,
    )


_writer = writer_from_settings()
_writer.install_signal_handlers = settings.AUDIT_SIGNAL_HANDLERS

submit = _writer.submit
lookup = _writer.lookup
flush = _writer.flush
shutdown = _writer.shutdown


def use_server_signal_handling() -> None:
    """For servers that own their signals (gunicorn workers): rely on their exit hook + atexit."""
    _writer.install_signal_handlers = False


def default_writer() -> PredictionLogWriter:
    return _writer
