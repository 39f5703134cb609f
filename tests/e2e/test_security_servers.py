"""Against real server processes: key expiry, revocation reaching every worker within 2 s, and
rate-limit counts shared by two `web` processes through Redis (each decides on its own view and
reconciles it in the background: the test waits for those syncs, reported on /metrics).

Two gunicorn processes (one worker each) run the real settings with DEBUG off against this
test's database; keys are created in committed transactions so the servers see them.
"""

import json
import signal
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from mlops import services
from mlops.models import ApiKey
from tests.servers import PRODUCTION, launch

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PROBE = "/v1/_probe/predict"
RATE = 6  # per hour on the servers: no window ends during the test


def fetch(base: str, path: str, key: str | None = None):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker, shared_redis):  # rate limits and key generations are shared through Redis
    env = {
        **PRODUCTION,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.server_settings",
        "RATELIMIT_ENABLE": "1",
        "RATELIMIT_PREDICT": f"{RATE}/h",
        "RATELIMIT_PREDICT_BURST": "",
        "INFERENCE_BACKGROUND_REFRESH": "0",
    }
    started = []
    try:
        for _ in range(2):  # both boot side by side before either is waited for
            started.append(launch("gunicorn", env=env, args=["--workers", "1", "--log-level", "warning"]))
        for server in started:
            server.wait_until_ready("/v1/_probe/public", within=30)
        yield [server.url for server in started]
    finally:
        for server in started:
            server.stop(signal.SIGINT)  # gunicorn: quick shutdown


def wait_for(base: str, key: str, status: int, timeout: float) -> float:
    """Seconds until ``base`` answers ``status`` to ``key`` (fails after ``timeout``)."""
    start = time.monotonic()
    while True:
        got = fetch(base, PROBE, key)[0]
        if got == status:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"{base} still answers {got}, not {status}, after {timeout} s")
        time.sleep(0.05)


def test_a_key_created_a_moment_ago_is_accepted_at_once_by_every_server(servers):
    _, known = services.api_key_create(client="known", role="internal_service")
    for base in servers:
        wait_for(base, known, 200, timeout=5)  # each worker has its key table loaded, as in production
    _, key = services.api_key_create(client="scripted", role="internal_service")
    # What a script does (KEY=$(manage.py create_api_key ...); curl ...): the very first call is served.
    assert [fetch(base, PROBE, key)[0] for base in servers] == [200] * len(servers)


def test_a_revoked_key_is_refused_by_every_server_within_two_seconds(servers):
    _, key = services.api_key_create(client="live", role="internal_service")
    for base in servers:
        wait_for(base, key, 200, timeout=5)  # a new key is picked up after its generation bump
    api_key = ApiKey.objects.get(client="live")
    services.api_key_revoke(api_key_id=api_key.pk)
    revoked_at = time.monotonic()
    for base in servers:
        wait_for(base, key, 401, timeout=5)
    elapsed = time.monotonic() - revoked_at
    print(f"revocation refused by both servers after {elapsed:.2f} s")
    assert elapsed < 2.0
    status, _, body = fetch(servers[0], PROBE, key)
    assert (status, json.loads(body)["error"]["code"]) == (401, "invalid_api_key")


def test_an_expired_key_is_refused(servers):
    _, key = services.api_key_create(client="expiring", role="internal_service", expires_at=timezone.now() + timedelta(seconds=2))
    wait_for(servers[0], key, 200, timeout=5)
    wait_for(servers[0], key, 401, timeout=5)
    status, _, body = fetch(servers[1], PROBE, key)
    assert (status, json.loads(body)["error"]["code"]) == (401, "api_key_expired")


def syncs(base: str) -> float:
    """How many times the server's worker has reconciled its rate-limit counts with Redis."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("mlops_ratelimit_syncs_total "):
            return float(line.split()[1])
    pytest.fail(f"no mlops_ratelimit_syncs_total on {base}/metrics: {[line for line in text.splitlines() if 'ratelimit' in line]}")


def settle(servers: list[str], timeout: float = 10) -> None:
    """Wait until every server has pushed what it admitted and read back what the others pushed:
    two full syncs of each, one server after the other, twice over (a sync under way when the
    wait begins may have missed the latest request)."""
    for _ in range(2):
        for base in servers:
            target = syncs(base) + 2
            deadline = time.monotonic() + timeout
            while syncs(base) < target:
                if time.monotonic() > deadline:
                    pytest.fail(f"{base} did not reconcile its rate-limit counts within {timeout} s")
                time.sleep(0.05)


def test_two_servers_share_one_rate_limit_count(servers):
    _, key = services.api_key_create(client="limited", role="inference_client")
    for base in servers:
        wait_for(base, key, 200, timeout=5)  # these two count as well
    answers = []
    for n in range(RATE):
        settle(servers)  # each server decides on its own view: let it see the other's requests first
        answers.append(fetch(servers[n % 2], PROBE, key))
    statuses = [status for status, _, _ in answers]
    assert statuses == [200] * (RATE - 2) + [429] * 2
    remaining = [int(headers["X-RateLimit-Remaining"]) for _, headers, _ in answers]
    assert remaining == [RATE - 3 - n for n in range(RATE - 2)] + [0, 0]  # one count across both servers
    _, headers, body = answers[-1]
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "rate_limited"
    assert headers["X-RateLimit-Limit"] == str(RATE) and int(headers["Retry-After"]) > 0
