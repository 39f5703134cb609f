"""The dual-model stream's models: each product's fast and full session, and cancellable runs.

`DualModels` holds, per product with a `DualModelConfig`, both models loaded and warmed by the
serving runtime's own loader (`inference.session.load_model`: verified download, schema check,
warm-up), reusing a session the serving snapshot already holds. Like the serving snapshot it is
rebuilt when the configuration generation changes (read at most once a second), on a background
thread after the first load, so the stream path reads no database row in the steady state.

`ModelRun` runs one model on its own thread with its own ``onnxruntime.RunOptions``, so that a
timeout or a client disconnect cancels exactly that run (``run_options.terminate = True``;
onnxruntime stops at the next node boundary, between a Loop's iterations included).
"""

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from inference.runtime import runtime
from inference.serving_config import ModelSpec
from inference.session import LoadedModel, ModelLoadError, load_model
from mlops.background.reloading import ReloadedTable
from mlops.choices import ModelStatus

logger = logging.getLogger(__name__)

THREAD_PREFIX = "dual-run"


@dataclass(frozen=True, eq=False)
class DualRoute:
    product: str
    fast: LoadedModel
    full: LoadedModel
    fast_timeout: float  # seconds
    full_timeout: float


@dataclass(frozen=True)
class _Routes:
    routes: dict[str, DualRoute]
    refused: dict[str, str]  # product -> why it cannot stream
    models: dict[str, LoadedModel]  # by model version id, to reuse sessions on the next reload


class DualModels:
    """Each configured product's route, in a `mlops.background.reloading.ReloadedTable`: the first stream
    of a process waits for the load, later reloads run in the background."""

    CHECK_INTERVAL = 0.5  # seconds between reads of the configuration generation (see ApiKeyCache.CHECK_INTERVAL)
    MAX_AGE = 30.0  # reload at least this often (a missed bump, a refused model to retry)
    MISS_WAIT = 2.0  # how long a product without a route waits for a reload under way (models load)

    def __init__(self):
        self._table: ReloadedTable[_Routes] = ReloadedTable(
            "dual_model_config", _load_routes, check_interval=self.CHECK_INTERVAL, max_age=self.MAX_AGE
        )

    def route(self, product: str) -> tuple[DualRoute | None, str]:
        """``(route, "")``, or ``(None, why)``. Blocking (may load models): call from a worker thread."""
        table = self._table.current()
        route = table.routes.get(product) if table else None
        if route is None:
            # A product configured a moment ago arrives with the reload under way.
            table = self._table.after_reload(self.MISS_WAIT)
            route = table.routes.get(product) if table else None
        return route, "" if route else (table.refused.get(product, "") if table else "")

    def reset(self) -> None:
        """Forget everything (tests)."""
        self._table.join()
        self._table.invalidate()


def _load_routes(previous: _Routes | None) -> _Routes:
    from mlops.models import DualModelConfig

    configs = list(DualModelConfig.objects.select_related("fast_model", "full_model"))
    snapshot = runtime.peek()
    serving = snapshot.models if snapshot else {}
    loaded = previous.models if previous else {}
    models, routes, refused = {}, {}, {}
    for config in configs:
        pair = []
        for model_version in (config.fast_model, config.full_model):
            if model_version.status == ModelStatus.ARCHIVED:  # e.g. the old production after a promote
                logger.error("dual-model stream of %s names %s, which is archived", config.product, model_version)
                refused[config.product] = f"{model_version} is archived"
                break
            spec = ModelSpec.of(model_version)
            model = loaded.get(spec.id) or serving.get(spec.id)
            if model is not None and model.spec != spec:
                model = None  # threshold or schema changed: load afresh
            if model is None:
                try:
                    model = load_model(spec)
                except ModelLoadError as exc:
                    logger.error("dual-model stream of %s cannot use %s: %s", config.product, model_version, exc)
                    refused[config.product] = f"{model_version} cannot be loaded"
                    break
            models[spec.id] = model
            pair.append(model)
        if len(pair) == 2:
            routes[config.product] = DualRoute(
                config.product, pair[0], pair[1], config.fast_timeout_ms / 1000, config.full_timeout_ms / 1000
            )
    return _Routes(routes, refused, models)


dual_models = DualModels()


class ModelRun:
    """One model run on a thread of its own; ``await run.wait(timeout)``; ``run.cancel()``.

    The outcome is ``("ok", score)``, ``("error", message)`` or ``("cancelled", reason)``
    (terminated: ``reason`` is what cancelled it, ``timeout`` or ``disconnect``).
    """

    def __init__(self, *, part: str, model: LoadedModel, row: np.ndarray, timeout: float, run_id: str):
        self.part, self.model, self.row, self.timeout = part, model, row, timeout
        self.run_options = ort.RunOptions()
        self.cancel_reason = ""
        self.latency_ms: float | None = None
        self.outcome: tuple[str, object] | None = None
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        # The run's thread logs with the stream's bound fields (its run_id): a copy of the caller's context.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._target,), name=f"{THREAD_PREFIX}-{part}-{run_id[:16]}", daemon=True)

    def start(self) -> None:
        self.deadline = time.monotonic() + self.timeout
        self._started = time.perf_counter()
        self._thread.start()

    def cancel(self, reason: str) -> None:
        if self.outcome is None and not self.cancel_reason:
            self.cancel_reason = reason
            self.run_options.terminate = True

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """True when the run ended within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def join(self, grace: float) -> bool:
        """Wait (up to ``grace`` s) until the thread itself has ended; True when it has."""
        await self.wait(grace)
        deadline = time.monotonic() + max(grace, 0.05)
        while self._thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        return not self._thread.is_alive()

    def _target(self) -> None:
        try:
            outcome = ("ok", float(self.model.run(self.row, run_options=self.run_options)[0]))
        except Exception as exc:
            if self.run_options.terminate:
                outcome = ("cancelled", self.cancel_reason or "cancelled")
            else:
                outcome = ("error", f"{self.model.label} failed: {type(exc).__name__}")
                logger.warning("dual-model run of %s failed: %s", self.model.label, str(exc)[:300])
        self.latency_ms = round((time.perf_counter() - self._started) * 1000, 3)
        self.outcome = outcome
        with contextlib.suppress(RuntimeError):  # the loop closed (process shutting down): nobody waits any more
            self._loop.call_soon_threadsafe(self._done.set)
