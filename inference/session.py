"""One loaded model version: its verified onnxruntime session, scoring, timeouts and explanation.

`load_model` turns a registry `ModelSpec` into a warmed `LoadedModel` or refuses it with
`ModelLoadError` (the download, checksum, session and schema checks are the registry's,
`mlops.artifacts.loading`; serving adds the explainer, the timeout and the warm-up);
`LoadedModel.run` scores rows under a timeout that really cancels the run (`RunOptions.terminate`,
set by one watchdog thread per process).
"""

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import onnxruntime as ort
from django.conf import settings
from django.utils import timezone

from inference.explain import Explainer, build_explainer
from inference.serving_config import ModelSpec
from mlops.artifacts.loading import ArtifactRefused, load_verified
from mlops.background.process import ProcessLocal

logger = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """A model version cannot be served; it is refused."""


class ModelRunError(Exception):
    """A model run failed."""

    reason = "error"


class ModelTimeout(ModelRunError):
    reason = "timeout"


class NonFiniteScore(ModelRunError):
    """The model scored ``rows`` (indices into the run's matrix) as NaN or infinity: extreme but
    finite inputs overflowed its arithmetic. The inputs, not the model, are the cause."""

    reason = "non_finite"

    def __init__(self, message: str, rows: list[int]):
        super().__init__(message)
        self.rows = rows


class _Watchdog:
    """Cancels model runs that outlive their timeout by setting ``RunOptions.terminate``.

    One thread per process polls the runs in flight every tenth of the shortest timeout it has
    seen (between 2 and 20 ms: 50 wake-ups a second with the default 200 ms); registering a
    run is a dict insert, far cheaper than handing each run to another thread. onnxruntime
    checks the flag between graph nodes, so a run is cancelled at its next node boundary.
    """

    def __init__(self):
        self._runs: dict[int, tuple[float, ort.RunOptions]] = {}
        self._tick = 0.02
        # state: "watching" once this process's thread runs
        self.process = ProcessLocal("run watchdog", self._start, after_fork=self._runs.clear)

    def watch(self, run_options: ort.RunOptions, timeout: float) -> int:
        self.process.ensure_started()
        if timeout < self._tick * 10:
            self._tick = max(0.002, timeout / 10)
        key = id(run_options)
        self._runs[key] = (time.monotonic() + timeout, run_options)
        return key

    def release(self, key: int) -> None:
        self._runs.pop(key, None)

    def _start(self) -> None:
        threading.Thread(target=self._loop, name="inference-watchdog", daemon=True).start()
        self.process.set_state("watching")

    def _loop(self) -> None:
        while True:
            time.sleep(self._tick)
            if not self._runs:
                continue
            now = time.monotonic()
            for deadline, run_options in list(self._runs.values()):
                if now >= deadline:
                    run_options.terminate = True


_watchdog = _Watchdog()


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One model version, loaded and warmed, with what scoring it needs."""

    spec: ModelSpec
    uuid: uuid.UUID
    label: str  # "name@version", the metrics label
    feature_names: tuple[str, ...]
    dtype: type
    input_name: str  # "tensor" layout; empty for one input per feature ("columns")
    score_output: str
    score_column: int
    session: ort.InferenceSession = field(repr=False)
    explainer: Explainer = field(repr=False)
    timeout: float  # seconds
    loaded_at: datetime
    warm_up_ms: float = 0.0  # the warm-up's run and explanation, timed (the first run plans and allocates)
    row_us: float = 0.0  # one row's run and explanation once warm, the fastest of a few (micro-batching reads it)
    takes_batches: bool = False  # answers a run of several rows with as many rows

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def threshold(self) -> float:
        return self.spec.threshold

    def run(self, matrix: np.ndarray, *, timeout: float | None = None, run_options: ort.RunOptions | None = None) -> np.ndarray:
        """Scores (positive-class probability) for the rows of ``matrix``, or `ModelRunError`.

        The run is cancelled after ``timeout`` (default: the model's). A caller that passes its
        own ``run_options`` cancels the run itself (``run_options.terminate = True``) instead.
        """
        feed = {self.input_name: matrix} if self.input_name else {name: matrix[:, i : i + 1] for i, name in enumerate(self.feature_names)}
        watched = run_options is None
        run_options = run_options or ort.RunOptions()
        key = _watchdog.watch(run_options, timeout or self.timeout) if watched else None
        try:
            output = self.session.run([self.score_output], feed, run_options)[0]
        except Exception as exc:
            if run_options.terminate:
                raise ModelTimeout(f"{self.label} took longer than {timeout or self.timeout:.3f} s") from None
            raise ModelRunError(f"{self.label} failed: {str(exc)[:200]}") from None
        finally:
            if watched:
                _watchdog.release(key)
        output = np.asarray(output, dtype=np.float64)
        if output.ndim == 0 or output.shape[0] != matrix.shape[0]:
            # A graph that answers a fixed number of rows: its answer cannot be told apart per row.
            raise ModelRunError(f"{self.label} returned {output.shape[0] if output.ndim else 0} rows for {matrix.shape[0]}")
        scores = output.reshape(matrix.shape[0], -1)[:, self.score_column]
        finite = np.isfinite(scores)
        if not finite.all():
            raise NonFiniteScore(f"{self.label} returned a non-finite score", rows=np.flatnonzero(~finite).tolist())
        return scores

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        return self.explainer.contributions(matrix, lambda rows: self.run(rows, timeout=self.timeout * 4))


def _timeout_for(spec: ModelSpec) -> float:
    overrides = settings.INFERENCE_MODEL_TIMEOUTS_MS or {}
    milliseconds = overrides.get(spec.id, overrides.get(f"{spec.product}/{spec.name}", settings.INFERENCE_MODEL_TIMEOUT_MS))
    return float(milliseconds) / 1000


def load_model(spec: ModelSpec) -> LoadedModel:
    """The registry's verified artifact (`mlops.artifacts.loading`), with its explainer and timeout, warmed up."""
    try:
        artifact = load_verified(
            artifact_uri=spec.artifact_uri, sha256=spec.sha256, input_schema=spec.input_schema, output_schema=spec.output_schema
        )
    except ArtifactRefused as exc:
        raise ModelLoadError(str(exc)) from None
    names = artifact.feature_names
    model = LoadedModel(
        spec=spec,
        uuid=uuid.UUID(spec.id),
        label=f"{spec.name}@{spec.version}",
        feature_names=names,
        dtype=artifact.dtype,
        input_name=artifact.input_name,
        score_output=artifact.score_output,
        score_column=artifact.score_column,
        session=artifact.session,
        explainer=build_explainer(artifact.proto, artifact.input_name, len(names)),
        timeout=_timeout_for(spec),
        loaded_at=timezone.now(),
    )
    synthetic = np.zeros((1, len(names)), dtype=artifact.dtype)
    started = time.perf_counter()
    try:
        # Warm-up: the first run allocates and plans; it must not be a client's request.
        model.run(synthetic, timeout=max(model.timeout, 5.0))
        model.contributions(synthetic)
        warm_up_ms = (time.perf_counter() - started) * 1000
        row_us = _row_us(model, synthetic)
    except ModelRunError as exc:
        raise ModelLoadError(f"warm-up: {exc}") from None
    return replace(model, warm_up_ms=warm_up_ms, row_us=row_us, takes_batches=_takes_batches(model, synthetic))


def _row_us(model: LoadedModel, row: np.ndarray, runs: int = 5) -> float:
    """What one prediction's model work costs once warm (µs): the fastest of ``runs``, the least
    disturbed by whatever else the machine does."""
    fastest = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        model.run(row, timeout=max(model.timeout, 5.0))
        model.contributions(row)
        fastest = min(fastest, time.perf_counter() - started)
    return fastest * 1e6


def _takes_batches(model: LoadedModel, row: np.ndarray) -> bool:
    """Whether several rows in one run get one answer each (a graph with a fixed batch size does not)."""
    try:
        model.run(np.repeat(row, 2, axis=0), timeout=max(model.timeout, 5.0))
    except ModelRunError:
        return False
    return True
