"""Micro-batching: concurrent single-row predictions of one model answered by one session call.

Why: a session call costs much more than a row in it. The gradient-boosting demo model scores one
row in ~16 µs and 32 rows in ~62 µs, and its explanation of one row is itself a 31-row run
(bench/README.md, "Micro-batching"). A logistic regression's whole prediction is a few µs of
model work, so batching pays for heavier models only: a model whose one-row run and explanation,
measured when it is loaded (`LoadedModel.row_us`), take less than INFERENCE_MICROBATCH_MIN_RUN_US
is never batched, and INFERENCE_MICROBATCH_MODELS says which models may be.

How (one `Batcher` per model session, as Triton's dynamic batcher or Ray Serve's ``@serve.batch``
do it, here within one process): a request's row joins its model's queue. When no batch of that
model is running, the request leads: it takes what is queued (at most
INFERENCE_MICROBATCH_MAX_ROWS rows; with INFERENCE_MICROBATCH_MAX_WAIT_US it first waits that long
for more, never more than half its own timeout), runs them in one call, and hands each waiter its
own row of the result. onnxruntime releases the GIL during the run, so other requests keep joining
the queue meanwhile; they make the next batch, led by the oldest of them. A lone request therefore
runs at once, as without batching, and batches grow with the load only.

What each request keeps as its own: its timeout, counted from when it joined (a waiter whose time
is up stops waiting and fails as a timed-out run does; a batch is cancelled when its oldest row's
time is up); its error (a failing run fails the requests of that batch with the error a run of
their own would have given them; rows a run scores as non-finite fail alone, and the others are run
again without them); and the rest of its answer (the caller makes its prediction id, decision and
log row, as without batching).

That is for servers that answer requests on threads (the DRF lane's gthread workers). The hot lane
answers on its event loop, where no two requests are ever in a run together, and moving them to
threads cost more than batching saved (bench/README.md). There, while a model it serves is
batched, the lane gathers the single predictions whose bodies arrived in the same turn of the loop
(or within INFERENCE_MICROBATCH_MAX_WAIT_US), scores their rows ahead in one call per model
(`inference.services.score_together`), then answers each request as usual, on the loop: its
model run takes the row's result from `scoring_together` instead of running. A request left out
(refused credentials or input, a failing or non-finite run) runs alone, with its own answer or
error; the requests of a batch that ran out of time fail as timed out, instead of each running
alone for as long again.
"""

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import lru_cache

import numpy as np
from django.conf import settings

from inference import metrics
from inference.session import LoadedModel, ModelTimeout, NonFiniteScore
from inference.snapshot import Snapshot

logger = logging.getLogger(__name__)

# What a batch runs: (the leader's model, the batch's rows, seconds left) -> one result per row.
Run = Callable[[LoadedModel, np.ndarray, float], list]

_PENDING = object()


class _Waiter:
    __slots__ = ("deadline", "done", "error", "leads", "result", "row")

    def __init__(self, row: np.ndarray, deadline: float):
        self.row = row
        self.deadline = deadline  # time.monotonic()
        self.result = _PENDING
        self.error: BaseException | None = None
        self.leads = False
        # Held until the waiter has its answer or is made leader: one lock per waiter is the
        # cheapest primitive to block a thread on and wake it from another.
        self.done = threading.Lock()
        self.done.acquire()

    def answer(self, result=_PENDING, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.release()

    @property
    def answered(self) -> bool:
        return self.result is not _PENDING or self.error is not None

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class Batcher:
    """The queue of one model's rows and who runs them (see the module docstring)."""

    def __init__(self, model: LoadedModel, *, max_rows: int, max_wait: float):
        self.max_rows = max_rows
        self.max_wait = max_wait  # seconds
        self._label = model.label
        self._rows = metrics.batch_rows_histogram(model.spec.product, model.label)
        self._lock = threading.Lock()  # held for list operations only, never across a run
        self._filled = threading.Condition(self._lock)
        self._queue: list[_Waiter] = []
        self._running = False  # a leader is taking or running a batch; the queue is empty when not

    def submit(self, run: Run, model: LoadedModel, row: np.ndarray, *, timeout: float):
        """``row``'s result, from a run of ``row`` alone or with others queued for the same model;
        `ModelTimeout` once ``timeout`` seconds have passed."""
        waiter = _Waiter(row, time.monotonic() + timeout)
        with self._lock:
            self._queue.append(waiter)
            leads = not self._running
            self._running = True
            if not leads and self.max_wait and len(self._queue) >= self.max_rows:
                self._filled.notify()
        if not leads:
            self._wait(waiter, timeout)
            if not waiter.leads:
                return waiter.outcome()
        return self._lead(run, model, waiter, timeout)

    def _wait(self, waiter: _Waiter, timeout: float) -> None:
        """Until ``waiter`` is answered or made leader; `ModelTimeout` when its time is up first."""
        if waiter.done.acquire(timeout=max(0.0, waiter.deadline - time.monotonic())):
            return
        with self._lock:
            if waiter.answered:  # answered as its time ran out
                return
            if waiter.leads:  # made leader as its time ran out: someone else must lead
                self._queue.remove(waiter)
                self._pass_lead()
            elif waiter in self._queue:  # not taken yet: no batch will run it
                self._queue.remove(waiter)
            # else taken by a running batch, which is cancelled by its oldest row's deadline: the
            # answer it may still produce for this row is dropped.
        raise self._timeout(timeout)

    def _lead(self, run: Run, model: LoadedModel, me: _Waiter, timeout: float):
        with self._lock:
            now = time.monotonic()
            if now >= me.deadline:  # made leader after its time was up: the next oldest leads instead
                self._queue.remove(me)
                self._pass_lead()
                raise self._timeout(timeout)
            if self.max_wait:
                wait = min(self.max_wait, (me.deadline - now) / 2)
                self._filled.wait_for(lambda: len(self._queue) >= self.max_rows, timeout=wait)
            # The leader is the oldest waiter, so it is in its own batch and its deadline is the batch's.
            batch = self._queue[: self.max_rows]
            del self._queue[: self.max_rows]
        try:
            self._answer(run, model, batch, me.deadline)
        finally:
            with self._lock:
                self._pass_lead()
        return me.outcome()

    def _pass_lead(self) -> None:
        """The oldest waiter leads the next batch (called with the lock held)."""
        if self._queue:
            successor = self._queue[0]
            successor.leads = True
            successor.done.release()
        else:
            self._running = False

    def _answer(self, run: Run, model: LoadedModel, batch: list[_Waiter], deadline: float) -> None:
        self._rows.observe(len(batch))
        matrix = np.vstack([waiter.row for waiter in batch])
        try:
            results = run(model, matrix, max(0.001, deadline - time.monotonic()))
        except NonFiniteScore as exc:
            blamed = set(exc.rows)
            for index in blamed:
                batch[index].answer(error=NonFiniteScore(str(exc), rows=[0]))
            rest = [waiter for index, waiter in enumerate(batch) if index not in blamed]
            if rest:
                self._answer(run, model, rest, deadline)
            return
        except Exception as exc:
            for waiter in batch:
                waiter.answer(error=exc)
            return
        for waiter, result in zip(batch, results, strict=True):
            waiter.answer(result)

    def _timeout(self, timeout: float) -> ModelTimeout:
        return ModelTimeout(f"{self._label} took longer than {timeout:.3f} s")


# The batcher of each model session, or None for a model that is not batched; an entry goes with
# its session when the snapshot lets go of the model.
_batchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_batchers_lock = threading.Lock()


def batcher(model: LoadedModel) -> Batcher | None:
    """The model's batcher, or None when its single predictions run alone (decided once per model)."""
    try:
        return _batchers[model.session]
    except KeyError:
        pass
    with _batchers_lock:
        if model.session not in _batchers:
            _batchers[model.session] = _new_batcher(model)
        return _batchers[model.session]


def _new_batcher(model: LoadedModel) -> Batcher | None:
    chosen = settings.INFERENCE_MICROBATCH_MODELS
    named = "*" in chosen or model.id in chosen or f"{model.spec.product}/{model.spec.name}" in chosen
    max_rows = settings.INFERENCE_MICROBATCH_MAX_ROWS
    if not named or max_rows < 2 or not model.takes_batches:
        return None
    if model.row_us < settings.INFERENCE_MICROBATCH_MIN_RUN_US:
        logger.info("not batching %s: one row costs %.0f µs of model work", model.label, model.row_us)
        return None
    logger.info("batching %s up to %d rows (one row costs %.0f µs of model work)", model.label, max_rows, model.row_us)
    return Batcher(model, max_rows=max_rows, max_wait=settings.INFERENCE_MICROBATCH_MAX_WAIT_US / 1e6)


@lru_cache(maxsize=1)
def batches_in(snapshot: Snapshot) -> bool:
    """Whether a single prediction may join a batch under ``snapshot`` (a product's production or
    canary is batched); asked per request by the hot lane, so worked out once per snapshot."""
    return any(batcher(model) is not None for route in snapshot.routes.values() for model in (route.production, route.canary) if model)


# The results scored ahead for the request being answered (each asyncio task has its own).
_together: ContextVar[dict | None] = ContextVar("scored_together", default=None)


@contextlib.contextmanager
def scoring_together(results: dict | None) -> Iterator[None]:
    """Answer the request with ``results`` (`inference.services.score_together`) at hand."""
    token = _together.set(results)
    try:
        yield
    finally:
        _together.reset(token)


def scored_together(key: str) -> tuple | None:
    """The row's result if it was scored ahead for this request (taken: it is used once); raises
    `ModelTimeout` if the batch it was in timed out."""
    results = _together.get()
    found = results.pop(key, None) if results else None
    if isinstance(found, ModelTimeout):
        raise found
    return found


def observe(model: LoadedModel, rows: int) -> None:
    metrics.batch_rows_histogram(model.spec.product, model.label).observe(rows)


def reset() -> None:
    """Forget every decision, so that the next use reads the settings again (tests)."""
    with _batchers_lock:
        _batchers.clear()
    batches_in.cache_clear()
