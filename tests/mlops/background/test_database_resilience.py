"""Background database work under a real outage: retries with backoff, a circuit that opens (and
says so in /metrics), fails fast while open, closes again; serving never notices."""

import threading
import time

import pytest
from django.db import ProgrammingError, connection, connections
from django.db.utils import OperationalError
from prometheus_client import REGISTRY

from inference.runtime import runtime
from mlops.background import resilience
from tests.conftest import infer
from tests.faults import database_down

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgresql"),  # the outage is made by the PostgreSQL server
]


@pytest.fixture(autouse=True)
def fast_resilience(settings):
    """Small numbers so that a test sees retries, an open circuit and a reset in about a second."""
    settings.DB_RETRY_ATTEMPTS = 2
    settings.DB_RETRY_INITIAL_SECONDS = 0.01
    settings.DB_RETRY_MAX_SECONDS = 0.05
    settings.DB_BREAKER_FAIL_MAX = 2
    settings.DB_BREAKER_RESET_SECONDS = 0.5
    resilience.reset()
    yield
    resilience.reset()


def _value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _in_background(fn):
    """Run ``fn`` on a new thread (a fresh connection, as the refresher and the guard have); return or raise its result."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _refresh():
    return resilience.database_call("serving_refresh", runtime.refresh)


def test_an_outage_is_retried_then_opens_the_circuit_and_serving_goes_on(api, serving, features):
    assert infer(api, features, event_id="before-outage").status_code == 200  # the process has loaded its keys
    retries = _value("mlops_dependency_retries_total", dependency="database", operation="serving_refresh")
    with database_down():
        for _ in range(2):
            with pytest.raises(OperationalError):
                _in_background(_refresh)
        assert (
            _value("mlops_dependency_retries_total", dependency="database", operation="serving_refresh") - retries == 2
        )  # 2 attempts per call
        assert _value("mlops_circuit_state", dependency="database") == 2  # open

        started = time.perf_counter()
        with pytest.raises(resilience.DependencyUnavailable):
            _in_background(_refresh)
        assert time.perf_counter() - started < 0.2  # not tried: no connection attempt, no backoff
        assert 'mlops_circuit_state{dependency="database"} 2.0' in api.get("/metrics").content.decode()
        assert infer(api, features, event_id="during-outage").status_code == 200  # the loaded snapshot answers

    # The database is back: a trial call every DB_BREAKER_RESET_SECONDS until one gets through
    # (the pool reconnects with its own backoff), which closes the circuit.
    deadline = time.monotonic() + 20
    while True:
        time.sleep(0.6)
        try:
            snapshot = _in_background(_refresh)
            break
        except (OperationalError, resilience.DependencyUnavailable):
            assert time.monotonic() < deadline, "the circuit never closed after the outage"
    assert snapshot is runtime.peek() and _value("mlops_circuit_state", dependency="database") == 0


def test_a_query_error_is_neither_retried_nor_counted_against_the_database():
    def bad_query():
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    retries = _value("mlops_dependency_retries_total", dependency="database", operation="bad_query")
    for _ in range(3):
        with pytest.raises(ProgrammingError):
            resilience.database_call("bad_query", bad_query)
    assert _value("mlops_dependency_retries_total", dependency="database", operation="bad_query") == retries
    assert _value("mlops_circuit_state", dependency="database") == 0
