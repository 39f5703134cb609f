"""Verified artifact loading: only the registered bytes, with a graph the registered schemas describe, become a session."""

from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from django.conf import settings

from mlops.artifacts.loading import ArtifactRefused, load_verified
from mlops.artifacts.stores import sha256_of
from mlops.demo import demo_feature_names

pytestmark = pytest.mark.django_db


def _load(model_version, **overrides):
    registered = {
        "artifact_uri": model_version.artifact_uri,
        "sha256": model_version.sha256,
        "input_schema": model_version.input_schema,
        "output_schema": model_version.output_schema,
    }
    return load_verified(**{**registered, **overrides})


def test_a_registered_demo_model_loads_with_its_feature_names_and_dtype(push_demo):
    artifact = _load(push_demo("logreg"))
    assert artifact.feature_names == tuple(demo_feature_names())
    assert artifact.dtype is np.float32
    row = np.zeros((1, len(artifact.feature_names)), dtype=artifact.dtype)
    [scores] = artifact.session.run([artifact.score_output], {artifact.input_name: row})
    assert 0.0 <= float(scores[0][artifact.score_column]) <= 1.0


def test_an_artifact_changed_in_the_store_is_refused_for_its_checksum(push_demo):
    model_version = push_demo("logreg")
    stored = Path(urlparse(model_version.artifact_uri).path)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    (Path(settings.MODEL_CACHE_DIR) / f"{model_version.sha256}.onnx").unlink(missing_ok=True)  # else the verified copy is used

    with pytest.raises(ArtifactRefused, match=r"^checksum: "):
        _load(model_version)


def test_a_graph_whose_inputs_differ_from_the_registered_schema_is_refused(push_demo):
    model_version = push_demo("logreg")
    registered = model_version.input_schema
    with pytest.raises(ArtifactRefused, match=r"^schema: graph inputs \['.+'\] do not match the registered input 'renamed'"):
        _load(model_version, input_schema={**registered, "input_name": "renamed"})
    with pytest.raises(ArtifactRefused, match=r"^schema: graph inputs do not match the registered features"):
        _load(model_version, input_schema={**registered, "layout": "columns"})


def test_bytes_that_are_not_an_onnx_graph_are_refused_as_a_graph(local_store, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    uri = local_store.put(garbage, "fraud_score", "garbage", "1", {"sha256": sha256_of(garbage)})

    with pytest.raises(ArtifactRefused, match=r"^graph: "):
        load_verified(artifact_uri=uri, sha256=sha256_of(garbage), input_schema=None, output_schema=None)
