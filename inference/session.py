"""One loaded model version: its verified onnxruntime session, scoring, timeouts and explanation.

`load_model` turns a registry `ModelSpec` into a warmed `LoadedModel` or refuses it with
`ModelLoadError`; `LoadedModel.run` scores rows under a timeout that really cancels the run
(`RunOptions.terminate`, set by one watchdog thread per process).
"""

import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import onnx
import onnxruntime as ort
from django.conf import settings
from django.utils import timezone

from inference.explain import Explainer, build_explainer
from inference.selectors import ModelSpec
from mlops.artifacts.stores import ChecksumMismatch, download_verified
from mlops.background.process import ProcessLocal

logger = logging.getLogger(__name__)

_DTYPES = {"float": np.float32, "double": np.float64, "int64": np.int64, "int32": np.int32}


class ModelLoadError(Exception):
    """A model version cannot be served; it is refused."""


class ModelRunError(Exception):
    """A model run failed."""

    reason = "error"


class ModelTimeout(ModelRunError):
    reason = "timeout"


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
        scores = np.asarray(output, dtype=np.float64).reshape(matrix.shape[0], -1)[:, self.score_column]
        if not np.isfinite(scores).all():
            raise ModelRunError(f"{self.label} returned a non-finite score")
        return scores

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        return self.explainer.contributions(matrix, lambda rows: self.run(rows, timeout=self.timeout * 4))


def _timeout_for(spec: ModelSpec) -> float:
    overrides = settings.INFERENCE_MODEL_TIMEOUTS_MS or {}
    milliseconds = overrides.get(spec.id, overrides.get(f"{spec.product}/{spec.name}", settings.INFERENCE_MODEL_TIMEOUT_MS))
    return float(milliseconds) / 1000


def load_model(spec: ModelSpec) -> LoadedModel:
    """Download (verified), build the session, check it against the registered schema, warm it up."""
    try:
        path = download_verified(spec.artifact_uri, spec.sha256)
        data = path.read_bytes()
    except ChecksumMismatch as exc:
        raise ModelLoadError(f"checksum: {exc}") from None
    except Exception as exc:  # StoreError, OSError: the store or the disk failed
        raise ModelLoadError(f"download: {exc}") from None
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        raise ModelLoadError("checksum: the cached artifact changed after it was verified")
    schema = spec.input_schema or {}
    names = tuple(feature["name"] for feature in schema.get("features", []))
    try:
        dtype = _DTYPES[schema["features"][0]["type"]] if names else None
        proto = onnx.load_model_from_string(data)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one worker per core; onnxruntime's own pool would fight it
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(f"graph: {str(exc)[:300]}") from None
    if not names or dtype is None:
        raise ModelLoadError("schema: the registered input schema lists no features")
    input_names = [item.name for item in session.get_inputs()]
    if schema.get("layout") == "tensor":
        input_name = schema.get("input_name", "")
        if input_names != [input_name]:
            raise ModelLoadError(f"schema: graph inputs {input_names} do not match the registered input {input_name!r}")
    else:
        input_name = ""
        if sorted(input_names) != sorted(names):
            raise ModelLoadError("schema: graph inputs do not match the registered features")
    score_output = (spec.output_schema or {}).get("score_output")
    if score_output not in [item.name for item in session.get_outputs()]:
        raise ModelLoadError(f"schema: no output {score_output!r} to read the score from")
    model = LoadedModel(
        spec=spec,
        uuid=uuid.UUID(spec.id),
        label=f"{spec.name}@{spec.version}",
        feature_names=names,
        dtype=dtype,
        input_name=input_name,
        score_output=score_output,
        score_column=int(spec.output_schema.get("score_column", 0)),
        session=session,
        explainer=build_explainer(proto, input_name, len(names)) if input_name else build_explainer(proto, "", len(names)),
        timeout=_timeout_for(spec),
        loaded_at=timezone.now(),
    )
    synthetic = np.zeros((1, len(names)), dtype=dtype)
    try:
        # Warm-up: the first run allocates and plans; it must not be a client's request.
        model.run(synthetic, timeout=max(model.timeout, 5.0))
        model.contributions(synthetic)
    except ModelRunError as exc:
        raise ModelLoadError(f"warm-up: {exc}") from None
    return model
