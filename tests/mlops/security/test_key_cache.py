"""The in-process key table: reloads on a new configuration generation, on a timer while the
shared cache is unreachable, and keeps the keys it has while the database is down.

Transactional: reloads after the first run on a background thread, which sees committed rows only.
"""

import threading
import time as real_time

import pytest
from django.db import connections

from mlops.background import clock as background_clock
from mlops.background import config_generation
from mlops.security import authentication
from mlops.security.authentication import ApiKeyCache
from tests.faults import database_down

from .conftest import create_key

pytestmark = pytest.mark.django_db(transaction=True)
needs_postgresql = pytest.mark.usefixtures("postgresql")  # the outage is made by the PostgreSQL server


class Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(background_clock, "monotonic", clock.monotonic)
    return clock


@pytest.fixture
def generation(monkeypatch):
    state = {"value": 1}
    monkeypatch.setattr(config_generation, "current", lambda: state["value"])
    monkeypatch.setattr(config_generation, "recent", lambda max_age: state["value"])
    return state


def prefix_of(key: str) -> str:
    return key[4:].split(".")[0]


def test_a_new_generation_is_picked_up_within_the_check_interval(clock, generation):
    cache = ApiKeyCache()
    assert cache.lookup("nothing") is None
    key = create_key("viewer")
    assert cache.lookup(prefix_of(key)) is None  # not reloaded: same generation, within the interval
    generation["value"] = 2
    clock.now += ApiKeyCache.CHECK_INTERVAL
    assert cache.lookup(prefix_of(key)) is not None


def test_while_the_shared_cache_is_down_keys_reload_on_a_timer(clock, generation):
    cache = ApiKeyCache()
    cache.lookup("warm-up")
    generation["value"] = -1
    key = create_key("viewer")
    clock.now += ApiKeyCache.CHECK_INTERVAL
    assert cache.lookup(prefix_of(key)) is None  # loaded a second ago: not yet
    clock.now += ApiKeyCache.FALLBACK_RELOAD
    assert cache.lookup(prefix_of(key)) is not None


@needs_postgresql
def test_while_the_database_is_down_the_loaded_keys_keep_working_without_waiting(clock, generation, settings):
    settings.DB_RETRY_ATTEMPTS = 1
    key = create_key("viewer")
    cache = ApiKeyCache()
    assert cache.lookup(prefix_of(key)) is not None
    with database_down():
        generation["value"] = 2  # a reload is due: it runs on a background thread and fails
        clock.now += ApiKeyCache.CHECK_INTERVAL
        started = real_time.perf_counter()
        assert cache.lookup(prefix_of(key)) is not None
        assert real_time.perf_counter() - started < 0.5  # the request did not wait for the database
        cache.join()
        assert cache.lookup(prefix_of(key)) is not None


@needs_postgresql
def test_a_worker_that_never_loaded_its_keys_answers_503_not_401(generation, settings):
    outcome = {}

    def first_request():  # a fresh worker thread: its connection is refused
        try:
            ApiKeyCache().lookup("anything")
        except authentication.CredentialsUnavailable as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()

    with database_down():
        thread = threading.Thread(target=first_request)
        thread.start()
        thread.join(30)
    assert isinstance(outcome.get("error"), authentication.CredentialsUnavailable)


def test_a_background_refresh_loads_new_keys_without_waiting_for_the_interval(clock, generation):
    cache = ApiKeyCache()
    cache.lookup("warm-up")
    key = create_key("viewer")
    generation["value"] = 2
    cache.refresh()
    assert cache.lookup(prefix_of(key)) is not None
