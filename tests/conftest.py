"""Fixtures shared by every test package: demo ONNX files, a registered product, users."""

from pathlib import Path

import pytest

from mlops import services
from mlops.demo import PRODUCT, build_demo_models
from mlops.stores import store_from_url


@pytest.fixture(scope="session")
def demo_model_files(tmp_path_factory) -> dict:
    """The demo models, trained once per test session: {"logreg": DemoModel, "gbdt": DemoModel}."""
    return {model.name: model for model in build_demo_models(tmp_path_factory.mktemp("demo-models"))}


@pytest.fixture
def local_store(tmp_path):
    return store_from_url((tmp_path / "store").as_uri())


@pytest.fixture
def push_demo(local_store, demo_model_files):
    """Push one demo model into a fresh local store and register it as a candidate."""

    def push(name: str = "logreg", version: str = "1", product: str = PRODUCT):
        demo = demo_model_files[name]
        return services.model_push(
            source=Path(demo.path), store=local_store, product=product, name=name, version=version, threshold=demo.threshold
        )

    return push


@pytest.fixture
def production_model(push_demo):
    """``fraud_score`` with the logistic-regression demo model in production."""
    model = push_demo("logreg")
    services.model_version_validate(model_version_id=model.pk, user=None, reason="test")
    return services.model_version_promote(model_version_id=model.pk, user=None, reason="test")
