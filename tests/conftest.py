"""Fixtures shared by every test package: demo ONNX files, a registered product in production,
a canary beside it, users, an API client with a key, in-memory spans, the services a test needs."""

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import orjson
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from moto.server import ThreadedMotoServer

from mlops import services
from mlops.artifacts.stores import store_from_url
from mlops.demo import PRODUCT, build_demo_models, demo_feature_names
from mlops.security import authentication
from tests import prerequisites
from tests.prerequisites import needs, needs_postgresql
from tests.servers import free_port  # tests import it from here too


def pytest_configure(config):
    # The hooks that count the skips for a missing server or tool and print them in one line.
    # Registered as the module already imported (by tests/settings.py first), rather than named in
    # pytest_plugins: pytest would warn that it comes too late to rewrite its asserts.
    config.pluginmanager.register(prerequisites, "prerequisites")


@pytest.fixture(scope="session", autouse=True)
def close_the_prediction_log_writer(django_db_setup, django_db_blocker):
    """At the end of the session stop the log writer's thread and database connection, so that
    pytest-django can drop this session's test database (PostgreSQL refuses while one is open)."""
    yield
    from audit import writer

    with django_db_blocker.unblock():
        writer.default_writer().close(10)


@pytest.fixture
def postgresql():
    """For a test that needs the PostgreSQL server (another process reaches the test database, or the
    test cuts its connections): skipped when this run fell back to SQLite (failed under REQUIRE_SERVICES=1)."""
    needs_postgresql()


@pytest.fixture(scope="session")
def shared_redis() -> str:
    """For a test whose processes meet through Redis: its URL; skipped when this run has no Redis."""
    url = os.environ.get("REDIS_URL")
    if not url:
        needs("Redis", how="start it on 127.0.0.1:6379 (.ci/run starts it); this run uses in-memory layers")
    return url


@pytest.fixture
def redis_server(tmp_path):
    """A throw-away redis-server of this test alone (kill it, stop it, count its commands):
    (process, URL)."""
    binary = shutil.which("redis-server")
    if binary is None:
        needs("redis-server", how="apt-get install redis-server (.ci/run installs it)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.05)
    yield process, f"redis://127.0.0.1:{port}/0"
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@pytest.fixture(autouse=True)
def fresh_rollup_reads():
    """Each test's log is another log: forget the window edges the rollup reads keep."""
    from audit.rollups import selectors

    selectors.reset()


@pytest.fixture
def inference_state(settings):
    """A clean serving runtime with the background refresher off (the test refreshes it)."""
    # Imported here: only the tests that use this fixture load the serving runtime.
    from audit import writer
    from inference import cache, microbatch, shadow
    from inference.runtime import runtime

    settings.INFERENCE_BACKGROUND_REFRESH = False
    runtime.reset()
    cache.reset()
    shadow.reset()
    microbatch.reset()
    yield
    shadow.reset(wait=True)
    writer.flush(10)
    runtime.reset()
    cache.reset()
    microbatch.reset()


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


@pytest.fixture
def serving(inference_state, production_model):
    """``fraud_score`` with the demo logistic regression in production, loaded in this process."""
    from inference.runtime import runtime

    runtime.refresh()
    return production_model


@pytest.fixture
def features() -> dict:
    """The first row of the demo data set, as the API receives it."""
    from sklearn.datasets import load_breast_cancer

    row = load_breast_cancer().data[0]
    return {name: float(value) for name, value in zip(demo_feature_names(), row, strict=True)}


@pytest.fixture
def api(settings):
    """A client with an internal_service key (every capability, not rate limited)."""
    settings.RATELIMIT_ENABLE = False
    _, key = services.api_key_create(client="ops-tests", role="internal_service")
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
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mlops.observability import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    yield exporter
    tracing.reset()


@pytest.fixture
def candidate(production_model, push_demo):
    """A validated ``gbdt`` version of ``fraud_score``, next to the ``logreg`` production."""
    model = push_demo("gbdt")
    return services.model_version_validate(model_version_id=model.pk, user=None, reason="offline checks passed")


@pytest.fixture
def canary(candidate):
    """``fraud_score`` with ``gbdt`` as canary at 10 %."""
    return services.canary_set(product=candidate.product, canary_model_id=candidate.pk, canary_percent=10, user=None, reason="start")


@pytest.fixture
def ops_user(django_user_model):
    user = django_user_model.objects.create_user("ops", password="ops-password-1", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="mlops", codename__in=["manage_rollout", "view_canaryconfig", "view_modelversion"]
        )
    )
    return user


@pytest.fixture
def viewer_user(django_user_model):
    user = django_user_model.objects.create_user("viewer", password="viewer-password-1", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="mlops", codename__in=["view_canaryconfig", "view_modelversion"])
    )
    return user


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        needs("promtool", how="apt-get install prometheus (.ci/run installs it)")
    return path


# Credentials every test of authentication knows (tests/mlops/security/conftest.py: make_jwt, create_key).
JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256-0123456789"
JWT_ISSUER = "https://idp.example.test/"
JWT_AUDIENCE = "mlops-api"


@pytest.fixture
def credential_settings(settings):
    """Known JWT settings, no development bypass, rate limits off unless a test turns them on (then
    reconciled with the store only when the test says so: ``limiter.sync()``), and the process's
    key table, verified tokens and rate-limit counts forgotten before and after."""
    from mlops.security.authentication import api_keys, verified_tokens
    from mlops.security.ratelimits import limiter

    settings.RATELIMIT_ENABLE = False
    settings.RATELIMIT_SYNC_IN_BACKGROUND = False
    settings.JWT_ALGORITHM = "HS256"
    settings.JWT_SECRET = JWT_SECRET
    settings.JWT_ISSUER = JWT_ISSUER
    settings.JWT_AUDIENCE = JWT_AUDIENCE
    settings.API_AUTH_DEV_BYPASS = False
    api_keys.invalidate()
    verified_tokens.clear()
    limiter.reset()
    yield settings
    api_keys.invalidate()
    verified_tokens.clear()
    limiter.reset()
