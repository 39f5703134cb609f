"""Fixtures of the serving-path tests: a clean runtime per test, real demo models, misbehaving models.

The background refresher is off in these tests: each test rebuilds the serving snapshot when it
wants (``runtime.refresh()``), so what is served is exactly what the test set up. Tests that
predict use ``transaction=True``: the audit writer's thread inserts the log rows through its own
connection, which must see the model versions.
"""

import shutil
import tempfile
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from mlops import services
from mlops.artifacts.stores import store_from_url
from mlops.demo import PRODUCT, demo_feature_names
from tests.onnx_models import build_broken_model, build_failing_model, build_fixed_batch_model, build_non_finite_model, build_slow_model


@pytest.fixture(autouse=True)
def inference_state(inference_state):
    """tests/conftest.py's ``inference_state`` for every test here (a fixture may use the one it overrides)."""


@pytest.fixture
def local_store():
    """A store under a short path (registry history keeps "synced from <uri>" reasons short)."""
    folder = tempfile.mkdtemp(prefix="inf")
    yield store_from_url(f"file://{folder}")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def events() -> list[dict]:
    """Real feature rows (as the API receives them) of the demo data set."""
    data = load_breast_cancer().data
    names = demo_feature_names()
    return [{name: float(value) for name, value in zip(names, row, strict=True)} for row in data[:200]]


@pytest.fixture
def validated(push_demo):
    """Push a demo model and validate it: ``validated("gbdt")``."""

    def make(name: str = "gbdt", version: str = "1"):
        model = push_demo(name, version)
        return services.model_version_validate(model_version_id=model.pk, user=None, reason="test")

    return make


@pytest.fixture(scope="session")
def misbehaving_files(tmp_path_factory, demo_model_files) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("misbehaving")
    return {
        "slow": build_slow_model(folder / "slow.onnx"),
        "failing": build_failing_model(folder / "failing.onnx"),
        "broken": build_broken_model(folder / "broken.onnx"),
        "fixed_batch": build_fixed_batch_model(folder / "fixed_batch.onnx", Path(demo_model_files["logreg"].path)),
        "non_finite": build_non_finite_model(folder / "non_finite.onnx"),
    }


@pytest.fixture
def push_misbehaving(local_store, misbehaving_files):
    """Register and validate a model of ``misbehaving_files`` (``slow``, ``failing``, ...) for ``fraud_score``."""

    def push(kind: str, version: str = "1"):
        model = services.model_push(source=misbehaving_files[kind], store=local_store, product=PRODUCT, name=kind, version=version)
        return services.model_version_validate(model_version_id=model.pk, user=None, reason="test")

    return push
