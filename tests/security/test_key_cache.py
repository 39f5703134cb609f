"""The in-process key table: reloads on a new configuration generation, on a timer while the
shared cache is unreachable, and keeps the keys it has while the database is down."""

import time as real_time

import pytest
from django.db import DatabaseError

from mlops import authentication
from mlops.authentication import ApiKeyCache

from .conftest import create_key

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return real_time.time()


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(authentication, "time", clock)
    return clock


@pytest.fixture
def generation(monkeypatch):
    state = {"value": 1}
    monkeypatch.setattr(authentication.config_generation, "current", lambda: state["value"])
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


def test_while_the_database_is_down_the_loaded_keys_keep_working(clock, generation, monkeypatch):
    key = create_key("viewer")
    cache = ApiKeyCache()
    assert cache.lookup(prefix_of(key)) is not None

    def broken():
        raise DatabaseError("down")

    monkeypatch.setattr(authentication, "_load_keys", broken)
    generation["value"] = 2
    clock.now += ApiKeyCache.CHECK_INTERVAL
    assert cache.lookup(prefix_of(key)) is not None


def test_a_worker_that_never_loaded_its_keys_answers_503_not_401(clock, generation, monkeypatch):
    monkeypatch.setattr(authentication, "_load_keys", lambda: (_ for _ in ()).throw(DatabaseError("down")))
    with pytest.raises(authentication.CredentialsUnavailable):
        ApiKeyCache().lookup("anything")


def test_a_background_refresh_loads_new_keys_without_waiting_for_the_interval(clock, generation):
    cache = ApiKeyCache()
    cache.lookup("warm-up")
    key = create_key("viewer")
    generation["value"] = 2
    cache.refresh()
    assert cache.lookup(prefix_of(key)) is not None
