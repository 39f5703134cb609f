"""The model store under failure: retries with backoff, a circuit breaker that opens (and says so in
/metrics), recovery through half-open, and serving that does not notice an unreachable store."""

import time

import pytest
from django.core.management import CommandError, call_command
from moto.server import ThreadedMotoServer
from prometheus_client import REGISTRY

from mlops.artifacts.stores import StoreError, store_from_url
from mlops.background import resilience
from tests.conftest import free_port, infer


@pytest.fixture(autouse=True)
def fast_resilience(settings):
    """Small numbers so that a test sees retries, an open circuit and a reset in well under a second."""
    settings.S3_RETRY_ATTEMPTS = 3
    settings.S3_RETRY_INITIAL_SECONDS = 0.01
    settings.S3_RETRY_MAX_SECONDS = 0.05
    settings.S3_BREAKER_FAIL_MAX = 2
    settings.S3_BREAKER_RESET_SECONDS = 0.5
    resilience.reset()
    yield
    resilience.reset()


def _value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _state(endpoint: str) -> float:
    return _value("mlops_circuit_state", dependency=f"s3:{endpoint}")


def _retries(endpoint: str) -> float:
    return _value("mlops_dependency_retries_total", dependency=f"s3:{endpoint}", operation="list")


def test_transient_failures_are_retried_then_the_circuit_opens_and_fails_fast(settings, s3_server):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings.AWS_ENDPOINT_URL = endpoint
    retries_before = _retries(endpoint)
    for _ in range(2):
        with pytest.raises(StoreError, match="cannot list"):
            list(store_from_url("s3://models/prefix").discover())
    assert _retries(endpoint) - retries_before == 4  # 3 attempts per call
    assert _state(endpoint) == 2  # open

    started = time.perf_counter()
    with pytest.raises(StoreError, match="circuit open"):
        list(store_from_url("s3://models/prefix").discover())
    assert time.perf_counter() - started < 0.2  # not tried: no connection, no backoff
    assert _value("mlops_dependency_calls_total", dependency=f"s3:{endpoint}", operation="list", outcome="rejected") >= 1


def test_the_circuit_closes_again_once_the_store_answers(settings, s3_server):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    settings.AWS_ENDPOINT_URL = endpoint
    for _ in range(2):
        with pytest.raises(StoreError):
            list(store_from_url("s3://models/prefix").discover())
    assert _state(endpoint) == 2

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)  # the store comes back
    server.start()
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="models")
        time.sleep(0.6)  # past S3_BREAKER_RESET_SECONDS: the next call is the half-open trial
        assert list(store_from_url("s3://models/prefix").discover()) == []
        assert _state(endpoint) == 0  # closed
    finally:
        server.stop()


def test_a_missing_bucket_is_not_retried_and_does_not_open_the_circuit(settings, s3_server):
    settings.AWS_ENDPOINT_URL = endpoint = s3_server
    retries_before = _retries(endpoint)
    for _ in range(3):
        with pytest.raises(StoreError, match="NoSuchBucket"):
            list(store_from_url("s3://no-such-bucket/prefix").discover())
    assert _retries(endpoint) == retries_before
    assert _state(s3_server) == 0


@pytest.mark.django_db(transaction=True)
def test_s3_unreachable_during_sync_opens_the_breaker_and_serving_is_unaffected(settings, s3_server, api, serving, features):
    # s3_server only provides credentials here: without them the failure would be NoCredentialsError,
    # which is the operator's to fix and rightly neither retried nor counted by the breaker.
    endpoint = f"http://127.0.0.1:{free_port()}"
    settings.AWS_ENDPOINT_URL = endpoint
    for attempt in range(3):
        with pytest.raises(CommandError, match="unreachable"):
            call_command("sync_models", store="s3://models/prefix")
        response = infer(api, features, event_id=f"during-outage-{attempt}")
        assert response.status_code == 200, response.content  # the loaded model keeps answering
    page = api.get("/metrics").content.decode()
    assert f'mlops_circuit_state{{dependency="s3:{endpoint}"}} 2.0' in page
    assert api.get("/readyz").status_code == 200
