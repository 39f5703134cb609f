"""Rate limits against a real Redis: no round trip per request, counts shared through the
background sync, the documented overshoot between two processes, a dead or hanging store."""

import logging
import multiprocessing
import signal
import threading
import time
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from django_ratelimit.core import _get_window

from mlops.choices import ApiCapability
from mlops.security import ratelimits
from mlops.security.authentication import Principal
from mlops.security.ratelimits import RateLimited, check_caller, limiter

from .conftest import bearer, create_key

pytestmark = pytest.mark.django_db
PREDICT = "/v1/_probe/predict"


def caller(minute_left: float = 0) -> Principal:
    """An inference client of its own whose one-minute window has at least ``minute_left`` s to go
    (django-ratelimit offsets each client's window), so that a test never crosses its end."""
    while True:
        ident = f"key:{uuid.uuid4().hex[:12]}"
        if _get_window(ident, 60) - time.time() >= minute_left:
            roles = frozenset({"inference_client"})
            return Principal(kind="api_key", ident=ident, owner="client:test", name="test", roles=roles, capabilities=frozenset())


def redis_cache(settings, url: str, **options) -> redis.Redis:
    """The rate limits on their own django-redis cache at ``url``; a plain client of that Redis."""
    settings.CACHES = {
        **django_settings.CACHES,
        "limits": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url, "OPTIONS": options},
    }
    settings.RATELIMIT_USE_CACHE = "limits"
    return redis.Redis.from_url(url)


def commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command this Redis server has run (those run by a script included), leaving
    out the INFO that asks."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in stats.items() if name != "cmdstat_info"}


def since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}


def counts(client: redis.Redis) -> list[int]:
    return sorted(int(client.get(key)) for key in client.keys("*"))


@pytest.fixture
def limits(settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_PREDICT = "120/m"
    settings.RATELIMIT_PREDICT_BURST = ""
    return settings


def check(principal: Principal):
    return check_caller(capability=ApiCapability.PREDICT, principal=principal, ip="")


def test_requests_cost_no_redis_command_and_one_sync_reconciles_them(limits, redis_server):
    store = redis_cache(limits, redis_server[1])
    principal = caller(minute_left=10)
    check(principal)
    limiter.sync()  # the sync's connection is open and its script loaded
    before = commands(store)
    usages = [check(principal) for _ in range(50)]
    assert since(before, commands(store)) == {}  # decided in memory
    assert usages[-1] == ratelimits.Usage(limit=120, remaining=69)
    limiter.sync()
    sent = since(before, commands(store))
    assert sent.pop("evalsha") == 1  # one round trip for all of them; the rest ran inside the script
    assert set(sent) <= {"incrby", "ttl", "expire", "get"}
    assert counts(store) == [51]


def test_another_processs_requests_arrive_with_the_next_sync(limits, redis_server):
    store = redis_cache(limits, redis_server[1])
    principal = caller(minute_left=10)
    check(principal)
    limiter.sync()
    [key] = store.keys("*")
    store.incrby(key, 118)  # what the other workers admitted meanwhile
    assert check(principal).remaining == 118  # not seen yet: decided on this process's view
    limiter.sync()
    assert store.ttl(key) > 0
    with pytest.raises(RateLimited) as refused:
        check(principal)
    assert refused.value.usage == ratelimits.Usage(limit=120, remaining=0)
    assert counts(store) == [120]


def _count_until_refused(principal: Principal, start: threading.Event, admitted) -> None:
    start.wait(10)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            check(principal)
            admitted.value += 1
        except RateLimited as refused:
            if refused.wait > 1:
                return  # the minute window: it stays shut until it ends
            # The burst window: this client's next second. Pacing the load, as a client
            # honouring Retry-After would; nothing waits on the other process.
            time.sleep(1 - time.time() % 1)


def test_two_processes_share_a_limit_within_the_documented_overshoot(limits, shared_redis):
    limits.RATELIMIT_PREDICT, limits.RATELIMIT_PREDICT_BURST = "30/m", "5/s"  # the defaults
    limits.RATELIMIT_SYNC_IN_BACKGROUND = True  # each forked process starts its own sync thread
    principal = caller(minute_left=30)  # 6 bursts of 5 take about 6 s
    fork = multiprocessing.get_context("fork")
    start = fork.Event()
    admitted = [fork.Value("i", 0) for _ in range(2)]
    workers = [fork.Process(target=_count_until_refused, args=(principal, start, value)) for value in admitted]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    total = sum(value.value for value in admitted)
    print(f"two processes admitted {[value.value for value in admitted]}: {total} of 30/m")
    assert 30 <= total <= 30 + 2 * 5  # the bound worked out in mlops.security.ratelimits


def test_a_dead_store_leaves_each_process_its_own_counts_and_counts_that(limits, caplog):
    redis_cache(limits, "redis://127.0.0.1:1/0", SOCKET_CONNECT_TIMEOUT=0.2, SOCKET_TIMEOUT=0.2)
    limits.RATELIMIT_PREDICT = "4/m"
    client, headers = Client(), bearer(create_key("inference_client"))
    codes = [client.get(PREDICT, headers=headers).status_code for _ in range(2)]
    before = ratelimits.FAIL_OPEN._value.get()
    with caplog.at_level(logging.WARNING, logger="mlops.security.ratelimits"):
        assert limiter.sync() == limits.RATELIMIT_FAIL_OPEN_PAUSE  # tried again after the pause
        codes += [client.get(PREDICT, headers=headers).status_code for _ in range(4)]
        limiter.sync()
    assert codes == [200] * 4 + [429] * 2  # never a 500, and still no more than this process's limit
    assert ratelimits.FAIL_OPEN._value.get() - before == 2  # the two served while the store was down
    assert len([record for record in caplog.records if "store failed" in record.getMessage()]) == 1  # once per outage


def test_a_hanging_store_stalls_the_sync_not_the_requests(limits, redis_server):
    process, url = redis_server
    store = redis_cache(limits, url, SOCKET_CONNECT_TIMEOUT=30, SOCKET_TIMEOUT=30)
    client, headers = Client(), bearer(create_key("inference_client"))
    assert client.get(PREDICT, headers=headers).status_code == 200
    process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        sync = threading.Thread(target=limiter.sync)
        sync.start()
        assert limiter.process.wait_for("syncing", timeout=10)
        codes = [client.get(PREDICT, headers=headers).status_code for _ in range(5)]
        assert sync.is_alive()  # still waiting for Redis while every request was answered
    finally:
        process.send_signal(signal.SIGCONT)
    sync.join(30)
    assert limiter.process.state == "synced"
    limiter.sync()
    assert codes == [200] * 5
    assert counts(store) == [6]
