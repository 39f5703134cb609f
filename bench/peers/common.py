"""What both peer servers share: the onnxruntime session, opened as the platform opens it.

These modules run in the peers' virtualenv (``bench/.peers/venv``), not the platform's, so they
import nothing of the platform; the session options below mirror ``mlops/artifacts/loading.py``.
"""

import json

import onnxruntime as ort


def open_session(path: str) -> tuple[ort.InferenceSession, str, list[str]]:
    """The session, its input name and the feature names (the ONNX metadata's order)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    names = json.loads(session.get_modelmeta().custom_metadata_map["feature_names"])
    return session, session.get_inputs()[0].name, names
