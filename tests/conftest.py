"""Fixtures shared by every test package: demo ONNX files, a registered product, users."""

import os
import uuid
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from mlops import services
from mlops.artifacts.stores import store_from_url
from mlops.demo import PRODUCT, build_demo_models
from tests.servers import free_port  # tests import it from here too


@pytest.fixture(scope="session", autouse=True)
def close_the_prediction_log_writer(django_db_setup, django_db_blocker):
    """At the end of the session stop the log writer's thread and database connection, so that
    pytest-django can drop this session's test database (PostgreSQL refuses while one is open)."""
    yield
    from audit import writer

    with django_db_blocker.unblock():
        writer.default_writer().close(10)


@pytest.fixture
def inference_state(settings):
    """A clean serving runtime with the background refresher off (the test refreshes it)."""
    # Imported here: only the tests that use this fixture load the serving runtime.
    from audit import writer
    from inference import cache, shadow
    from inference.runtime import runtime

    settings.INFERENCE_BACKGROUND_REFRESH = False
    runtime.reset()
    cache.reset()
    shadow.reset()
    yield
    shadow.reset(wait=True)
    writer.flush(10)
    runtime.reset()
    cache.reset()


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


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-protocol server (moto in server mode) on 127.0.0.1, reached by boto3 over TCP."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    previous = {key: os.environ.get(key) for key in credentials}
    os.environ.update(credentials)
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server, settings):
    """An empty bucket on the S3 server; settings point boto3 at it. Returns the bucket name."""
    settings.AWS_ENDPOINT_URL = s3_server
    name = f"models-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name
