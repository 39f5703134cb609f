"""The dual-model stream's models: each product's fast and full session, and cancellable runs.

`DualModels` holds, per product with a `DualModelConfig`, both models loaded and warmed by the
serving runtime's own loader (`inference.runtime.load_model`: verified download, schema check,
warm-up), reusing a session the serving snapshot already holds. Like the serving snapshot it is
rebuilt when the configuration generation changes (read at most once a second), so the stream
path reads no database row in the steady state.

`ModelRun` runs one model on its own thread with its own ``onnxruntime.RunOptions``, so that a
timeout or a client disconnect cancels exactly that run (``run_options.terminate = True``;
onnxruntime stops at the next node boundary, between a Loop's iterations included).
"""

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from inference.runtime import LoadedModel, ModelLoadError, load_model, runtime
from inference.selectors import ModelSpec
from mlops import config_generation, resilience

logger = logging.getLogger(__name__)

THREAD_PREFIX = "dual-run"


@dataclass(frozen=True, eq=False)
class DualRoute:
    product: str
    fast: LoadedModel
    full: LoadedModel
    fast_timeout: float  # seconds
    full_timeout: float


class DualModels:
    CHECK_INTERVAL = 1.0  # seconds between reads of the configuration generation
    MAX_AGE = 30.0  # reload at least this often (a missed bump, a refused model to retry)

    def __init__(self):
        self._routes: dict[str, DualRoute] = {}
        self._refused: dict[str, str] = {}  # product -> why it cannot stream
        self._models: dict[str, LoadedModel] = {}
        self._generation: int | None = None
        self._next_check = 0.0
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def route(self, product: str) -> tuple[DualRoute | None, str]:
        """``(route, "")``, or ``(None, why)``. Blocking (may load models): call from a worker thread."""
        now = time.monotonic()
        if now >= self._next_check:
            self._maybe_reload(now)
        route = self._routes.get(product)
        return route, "" if route else self._refused.get(product, "")

    def reset(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._routes, self._refused, self._models = {}, {}, {}
            self._generation, self._next_check, self._loaded_at = None, 0.0, float("-inf")

    def _maybe_reload(self, now: float) -> None:
        with self._lock:
            if now < self._next_check:
                return
            self._next_check = now + self.CHECK_INTERVAL
            generation = config_generation.current()
            if generation == self._generation and generation != -1 and now - self._loaded_at < self.MAX_AGE:
                return
            try:
                resilience.database_call("dual_model_config", self._reload, retry=False)  # a stream is waiting
            except resilience.DependencyUnavailable:  # an open circuit has its metric
                return
            except Exception:
                logger.exception("dual-model configuration reload failed; the previous one keeps serving")
                return
            self._generation, self._loaded_at = generation, now

    def _reload(self) -> None:
        from mlops.models import DualModelConfig

        configs = list(DualModelConfig.objects.select_related("fast_model", "full_model"))
        snapshot = runtime.peek()
        serving = snapshot.models if snapshot else {}
        models, routes, refused = {}, {}, {}
        for config in configs:
            pair = []
            for model_version in (config.fast_model, config.full_model):
                spec = ModelSpec.of(model_version)
                model = self._models.get(spec.id) or serving.get(spec.id)
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
        self._models, self._routes, self._refused = models, routes, refused


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
        self._thread = threading.Thread(target=self._target, name=f"{THREAD_PREFIX}-{part}-{run_id[:16]}", daemon=True)

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
