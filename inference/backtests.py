"""Backtests, the scoring side: a candidate scored on logged production traffic, off the serving path.

Why here: scoring needs the candidate's verified onnxruntime session (`inference.session.load_model`,
the checks every served model passes) and the serving path's feature rows and decision rule, and only
`inference` may import those. The record (`audit.models.Backtest`), the rows to replay, the report
and the validation gate are `audit`'s (`audit.backtests`), which this module imports; the registry
reaches both through `mlops.hooks` (``backtest_start`` for its admin action, ``backtest_gate`` for
``BACKTEST_REQUIRED_FOR_VALIDATION``), since `mlops` imports neither app.

How it runs:

- `backtest_create` records a queued run; `backtest_run` claims it (queued -> running, a conditional
  update, so one run is never scored twice), loads the candidate, reads the rows in chunks of
  ``BACKTEST_BATCH_SIZE`` and scores each chunk in one session run (onnxruntime costs ~24 µs for 128
  rows where one row costs ~9 µs), writing its progress after every run, then stores the report
  (done) or the reason it could not (failed: an artifact that does not load, a run that fails).
- `backtest_start` is create + run on a thread of its own, started once the record is committed:
  the web process answers at once (``POST /v1/backtests`` answers 202) and a request never waits on
  a backtest. At most ``BACKTEST_MAX_RUNNING`` run at once per process; the others wait queued. The
  command (``manage.py backtest``) runs inline, with its progress bar.

A thread rather than the guard process or a task queue: a backtest is a few seconds of CPU for
thousands of rows, reads only the database and the model store, and the platform has no task queue;
a run interrupted by a restart stays ``running`` (its ``started_at`` says since when); start another.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import islice

import numpy as np
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from audit import backtests as audit_backtests
from audit.models import Backtest, BacktestStatus
from inference.decisions import decide
from inference.serving_config import ModelSpec
from inference.session import LoadedModel, ModelLoadError, ModelRunError, NonFiniteScore, load_model
from inference.validation import InvalidInput, feature_row
from mlops.models import ModelVersion
from mlops.services import LifecycleError

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (rows done, rows in all)


class BacktestError(LifecycleError):
    """A backtest that cannot be started as asked (shown to people as the registry's refusals are)."""


def backtest_create(*, model_version_id, last: int | None = None, since: datetime | None = None, user=None) -> Backtest:
    """A queued backtest of ``model_version_id`` on the newest ``last`` production rows of its product
    logged since ``since`` (either may be left out; with neither, the newest ``BACKTEST_DEFAULT_ROWS``)."""
    model_version = ModelVersion.objects.filter(pk=model_version_id).first()
    if model_version is None:
        raise BacktestError(f"model version {model_version_id} does not exist")
    if last is None and since is None:
        last = settings.BACKTEST_DEFAULT_ROWS
    if last is not None and not 1 <= last <= settings.BACKTEST_MAX_ROWS:
        raise BacktestError(f"last must be between 1 and {settings.BACKTEST_MAX_ROWS} (BACKTEST_MAX_ROWS), not {last}")
    return Backtest.objects.create(model_version=model_version, product=model_version.product, last=last, since=since, created_by=user)


def backtest_run(*, backtest_id, progress: Progress | None = None) -> Backtest:
    """Score the queued backtest ``backtest_id`` and store its report; the record, done or failed."""
    now = timezone.now()
    if not Backtest.objects.filter(pk=backtest_id, status=BacktestStatus.QUEUED).update(status=BacktestStatus.RUNNING, started_at=now):
        current = Backtest.objects.filter(pk=backtest_id).first()
        raise BacktestError(f"backtest {backtest_id} does not exist" if current is None else f"{current} is not queued")
    backtest = Backtest.objects.select_related("model_version").get(pk=backtest_id)
    try:
        report = _score(backtest, until=now, progress=progress)
    except (ModelLoadError, ModelRunError) as exc:
        _finish(backtest_id, status=BacktestStatus.FAILED, error=str(exc))
    except Exception as exc:
        _finish(backtest_id, status=BacktestStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        _finish(backtest_id, status=BacktestStatus.DONE, report=report)
    return Backtest.objects.select_related("model_version").get(pk=backtest_id)


def backtest_start(*, model_version_id, last: int | None = None, since: datetime | None = None, user=None) -> Backtest:
    """`backtest_create`, then `backtest_run` on a background thread once the record is committed."""
    backtest = backtest_create(model_version_id=model_version_id, last=last, since=since, user=user)
    transaction.on_commit(lambda: _in_background(backtest.pk))
    return backtest


# --- Running in the background ------------------------------------------------------------------

_slots_lock = threading.Lock()
_slots: threading.Semaphore | None = None
_threads: list[threading.Thread] = []


def _slot() -> threading.Semaphore:
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(max(1, settings.BACKTEST_MAX_RUNNING))
        return _slots


def _in_background(backtest_id) -> None:
    def work():
        try:
            with _slot():
                backtest_run(backtest_id=backtest_id)
        except Exception:
            logger.exception("backtest %s failed", backtest_id)
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=work, name=f"backtest-{backtest_id}", daemon=True)
    _threads[:] = [t for t in _threads if t.is_alive()] + [thread]
    thread.start()


def wait_for_background(timeout: float) -> bool:
    """Wait for this process's background runs to end (tests, a graceful shutdown); whether they all did."""
    deadline = time.monotonic() + timeout
    for thread in list(_threads):
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in _threads)


# --- Scoring ------------------------------------------------------------------------------------


def _finish(backtest_id, *, status: str, report: dict | None = None, error: str = "") -> None:
    Backtest.objects.filter(pk=backtest_id, status=BacktestStatus.RUNNING).update(
        status=status, report=report, error=error[:2000], finished_at=timezone.now()
    )


def _chunks(rows: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(rows, size)):
        yield chunk


def _score(backtest: Backtest, *, until: datetime, progress: Progress | None) -> dict:
    model_version = backtest.model_version
    model = load_model(ModelSpec.of(model_version))
    rows = audit_backtests.backtest_rows(product=backtest.product, until=until, since=backtest.since, last=backtest.last)
    total = rows.count()
    Backtest.objects.filter(pk=backtest.pk).update(rows_total=total)
    if progress:
        progress(0, total)
    # The bins first (one query of the rows to replay per feature segmentation), so rows are counted into them as scored.
    tally = audit_backtests.Tally(segments=audit_backtests.backtest_segments(product=backtest.product, rows=rows))
    batch = max(1, settings.BACKTEST_BATCH_SIZE)
    done = 0
    for chunk in _chunks(rows.values(*audit_backtests.ROW_FIELDS).iterator(chunk_size=batch), batch):
        _score_chunk(model, chunk, tally)
        done += len(chunk)
        Backtest.objects.filter(pk=backtest.pk).update(rows_done=done)
        if progress:
            progress(done, total)
    return audit_backtests.backtest_report(
        tally,
        model={
            "id": str(model_version.pk),
            "product": model_version.product,
            "model": f"{model_version.name}@{model_version.version}",
            "status": model_version.status,
            "threshold": model_version.threshold,
        },
        window={"since": backtest.since.isoformat() if backtest.since else None, "until": until.isoformat(), "last": backtest.last},
    )


def _score_chunk(model: LoadedModel, chunk: list[dict], tally: "audit_backtests.Tally") -> None:
    """Score the replayable rows of ``chunk`` in one session run (more only when some scored non-finite)."""
    names = model.feature_names
    kept, matrix_rows = [], []
    for row in chunk:
        tally.see(row)
        problem = audit_backtests.unreplayable(row["features"], names)
        if problem is not None:
            tally.skip(*problem)
            continue
        try:
            # Only the candidate's features: production may have taken more.
            matrix_rows.append(feature_row({name: row["features"][name] for name in names}, names, model.dtype))
        except InvalidInput as exc:
            tally.skip(audit_backtests.INVALID, [key.removeprefix("features.") for key in exc.fields])
            continue
        kept.append(row)
    if not kept:
        return
    matrix = np.vstack(matrix_rows)
    _time_single_rows(model, matrix, tally)
    while kept:
        started = time.perf_counter()
        try:
            scores = model.run(matrix, timeout=max(5.0, model.timeout * len(kept) / 32))
        except NonFiniteScore as exc:
            tally.run(len(kept), (time.perf_counter() - started) * 1000)
            bad = set(exc.rows)
            for _ in bad:
                tally.skip(audit_backtests.NON_FINITE)
            keep = [i for i in range(len(kept)) if i not in bad]
            kept, matrix = [kept[i] for i in keep], matrix[keep]
            continue
        tally.run(len(kept), (time.perf_counter() - started) * 1000)
        scores = scores.tolist()
        tally.add(kept, scores=scores, decisions=[decide(score, model.threshold) for score in scores])
        return


def _time_single_rows(model: LoadedModel, matrix: np.ndarray, tally: "audit_backtests.Tally") -> None:
    """The candidate's own latency: single-row runs (what one request costs it), up to ``BACKTEST_LATENCY_SAMPLES``."""
    wanted = settings.BACKTEST_LATENCY_SAMPLES - len(tally.single_row_ms)
    for index in range(min(wanted, matrix.shape[0])):
        started = time.perf_counter()
        try:
            model.run(matrix[index : index + 1])
        except ModelRunError:
            continue  # the batch run reports what is wrong with the row
        tally.single_row_ms.append((time.perf_counter() - started) * 1000)
