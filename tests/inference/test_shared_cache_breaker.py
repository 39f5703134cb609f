"""The shared prediction-cache tier behind its circuit breaker: a Redis that accepts connections and
never answers costs one socket timeout, then the request path skips the tier at once."""

import socket
import threading
import time

import pytest
from prometheus_client import REGISTRY

from inference import cache, services
from inference.cache import SHARED_TIER
from mlops.demo import PRODUCT

pytestmark = pytest.mark.django_db(transaction=True)  # the log writer, on its own connection, writes these predictions


class HangingRedis:
    """A TCP server on loopback that reads whatever it is sent and never answers."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = 0
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection):
        while True:
            try:
                data = connection.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.received += len(data)

    def close(self):
        self.server.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def hanging_redis(settings):
    server = HangingRedis()
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{server.port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    settings.INFERENCE_CACHE_SHARED = True
    settings.INFERENCE_CACHE_SHARED_PROBE_SECONDS = 600  # no trial call during the test
    cache.reset()
    yield server
    server.close()
    cache.reset()


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_hanging_redis_is_asked_once_then_skipped_at_once(serving, events, hanging_redis):
    rejected = sample("mlops_dependency_calls_total", dependency=SHARED_TIER, operation="get", outcome="rejected")
    first = services.predict(event_id="hang-0", product=PRODUCT, features=events[0])
    assert first.score is not None and not first.cached  # answered after the tier's timeout, computed here
    deadline = time.monotonic() + 5
    while hanging_redis.received == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    asked = hanging_redis.received
    assert asked > 0, "the first miss asked the shared tier"
    assert sample("mlops_circuit_state", dependency=SHARED_TIER) == 2  # open

    for index in range(1, 11):  # ten more misses: none of them reaches the hanging server
        answer = services.predict(event_id=f"hang-{index}", product=PRODUCT, features=events[index])
        assert answer.score is not None and not answer.cached
    assert sample("mlops_dependency_calls_total", dependency=SHARED_TIER, operation="get", outcome="rejected") == rejected + 10
    assert hanging_redis.received == asked


def test_once_redis_answers_again_a_trial_call_closes_the_breaker(serving, events, settings, hanging_redis, shared_redis):
    settings.INFERENCE_CACHE_SHARED_PROBE_SECONDS = 0.05
    cache.reset()  # a breaker that tries again after 0.05 to 0.1 s
    services.predict(event_id="trial-0", product=PRODUCT, features=events[0])
    assert sample("mlops_circuit_state", dependency=SHARED_TIER) == 2
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": shared_redis}}  # Redis is back
    deadline, index = time.monotonic() + 5, 1
    while sample("mlops_circuit_state", dependency=SHARED_TIER) != 0 and time.monotonic() < deadline:
        cache.prediction_cache().clear()  # every call a miss, so each may be the trial call
        services.predict(event_id=f"trial-{index}", product=PRODUCT, features=events[1 + index % 100])  # events[150] stays unseen
        index += 1
    assert sample("mlops_circuit_state", dependency=SHARED_TIER) == 0  # a trial call went through: closed
    served = services.predict(event_id="trial-shared", product=PRODUCT, features=events[150])
    cache.prediction_cache().clear()  # as another worker would: only the shared tier has it
    again = services.predict(event_id="trial-shared-2", product=PRODUCT, features=events[150])
    assert again.cached and again.score == served.score
