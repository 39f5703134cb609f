"""Fixtures of the operations tests: a served demo model, an API client with a key, promtool."""

import shutil

import orjson
import pytest
from django.test import Client
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from audit import writer
from inference.runtime import runtime
from mlops import services as registry
from mlops.demo import PRODUCT, demo_feature_names
from mlops.observability import tracing
from mlops.security import authentication


@pytest.fixture(scope="session", autouse=True)
def close_the_prediction_log_writer(django_db_setup, django_db_blocker):
    """At the end of the session, stop the writer thread and its database connection, so that
    pytest-django can drop this session's test database (it refuses while a session is open)."""
    yield
    with django_db_blocker.unblock():
        writer.default_writer().close(10)


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install prometheus (.ci/run installs it)")
    return path


@pytest.fixture
def serving(inference_state, production_model):
    """``fraud_score`` with the demo logistic regression in production, loaded in this process."""
    runtime.refresh()
    return production_model


@pytest.fixture
def features() -> dict:
    from sklearn.datasets import load_breast_cancer

    row = load_breast_cancer().data[0]
    return {name: float(value) for name, value in zip(demo_feature_names(), row, strict=True)}


@pytest.fixture
def api(settings):
    """A client with an internal_service key (every capability, not rate limited)."""
    settings.RATELIMIT_ENABLE = False
    _, key = registry.api_key_create(client="ops-tests", role="internal_service")
    authentication.api_keys.invalidate()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.key = key
    return client


def infer(client, features: dict, event_id: str = "evt-1", product: str = PRODUCT):
    body = orjson.dumps({"event_id": event_id, "product": product, "features": features})
    return client.post("/v1/infer", body, content_type="application/json")


@pytest.fixture
def spans():
    """Tracing on for one test, into memory: the exporter's finished spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    yield exporter
    tracing.reset()
