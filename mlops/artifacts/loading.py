"""Verified artifact loading: from a registered version's artifact to an onnxruntime session.

Serving (`inference.session.load_model`) and any offline scoring need the same guarantees, so
they live with the registry that records them: the bytes are the ones registered (downloaded
verified against the sha256, then re-hashed in memory and the session built from those very
bytes, so nothing can change between check and use), the graph parses, and its inputs and
score output are the ones the registered schemas describe.

An artifact that fails is refused with `ArtifactRefused`, whose message starts with what failed
(``download:``, ``checksum:``, ``graph:`` or ``schema:``); the serving runtime shows that reason
on the rollout page and in its logs.
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort

from mlops.artifacts.stores import ChecksumMismatch, download_verified

# The registered feature types (mlops.artifacts.onnx_schema) as the arrays a session is fed.
_DTYPES = {"float": np.float32, "double": np.float64, "int64": np.int64, "int32": np.int32}


class ArtifactRefused(Exception):
    """The artifact cannot be used; the message starts with ``download:``, ``checksum:``, ``graph:`` or ``schema:``."""


@dataclass(frozen=True, eq=False)
class VerifiedArtifact:
    """A session over verified bytes, with what the registered schemas say about feeding and reading it."""

    session: ort.InferenceSession = field(repr=False)
    proto: onnx.ModelProto = field(repr=False)  # the parsed graph (explanations read its structure)
    feature_names: tuple[str, ...]
    dtype: type
    input_name: str  # "tensor" layout: the one input; empty for one input per feature ("columns")
    score_output: str
    score_column: int


def load_verified(*, artifact_uri: str, sha256: str, input_schema: dict | None, output_schema: dict | None) -> VerifiedArtifact:
    """Download (verified), build the session, check it against the registered schemas, or `ArtifactRefused`."""
    try:
        data = download_verified(artifact_uri, sha256).read_bytes()
    except ChecksumMismatch as exc:
        raise ArtifactRefused(f"checksum: {exc}") from None
    except Exception as exc:  # StoreError, OSError: the store or the disk failed
        raise ArtifactRefused(f"download: {exc}") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactRefused("checksum: the cached artifact changed after it was verified")
    schema = input_schema or {}
    names = tuple(feature["name"] for feature in schema.get("features", []))
    try:
        dtype = _DTYPES[schema["features"][0]["type"]] if names else None
        proto = onnx.load_model_from_string(data)
        session = ort.InferenceSession(data, sess_options=_session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ArtifactRefused(f"graph: {str(exc)[:300]}") from None
    if not names or dtype is None:
        raise ArtifactRefused("schema: the registered input schema lists no features")
    input_names = [item.name for item in session.get_inputs()]
    if schema.get("layout") == "tensor":
        input_name = schema.get("input_name", "")
        if input_names != [input_name]:
            raise ArtifactRefused(f"schema: graph inputs {input_names} do not match the registered input {input_name!r}")
    else:
        input_name = ""
        if sorted(input_names) != sorted(names):
            raise ArtifactRefused("schema: graph inputs do not match the registered features")
    output_schema = output_schema or {}
    score_output = output_schema.get("score_output")
    if score_output not in [item.name for item in session.get_outputs()]:
        raise ArtifactRefused(f"schema: no output {score_output!r} to read the score from")
    return VerifiedArtifact(
        session=session,
        proto=proto,
        feature_names=names,
        dtype=dtype,
        input_name=input_name,
        score_output=score_output,
        score_column=int(output_schema.get("score_column", 0)),
    )


def _session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one worker per core; onnxruntime's own pool would fight it
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return options
