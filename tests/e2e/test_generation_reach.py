"""A canary set from another process reaches both gunicorn workers within 2 s, in the embedded
default (SQLite, no Redis) as with Redis."""

import http.client
import json
import os
import subprocess
import sys
import time

import pytest

from mlops.demo import demo_feature_names
from tests import servers

pytestmark = pytest.mark.django_db(transaction=True)
SET_CANARY = (
    "from mlops import services; from mlops.models import ModelVersion; "
    "gbdt = ModelVersion.objects.get(name='gbdt'); "
    "services.canary_set(product='fraud_score', canary_model_id=gbdt.pk, canary_percent=100, user=None, reason='e2e')"
)


def role_of_one_answer(port: int, key: str, n: int) -> str:
    """One POST on a new connection: the kernel hands new connections to either worker."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"product": "fraud_score", "event_id": f"evt-{n}", "features": dict.fromkeys(demo_feature_names(), 1.0)})
    connection.request("POST", "/v1/infer", body=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    assert response.status == 200, payload
    return payload["model_role"]


@pytest.mark.parametrize("topology", ["embedded", "redis"])
def test_a_canary_set_elsewhere_reaches_every_worker_within_two_seconds(tmp_path, topology):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "VAR_DIR": str(tmp_path / "var"),
        "MODEL_STORE_URL": (tmp_path / "store").as_uri(),
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "REDIS_URL": os.environ["REDIS_URL"] if topology == "redis" else None,
        "CACHE_KEY_PREFIX": f"generation-{tmp_path.name}",
    }
    manage_env = {name: value for name, value in servers.server_environment(env).items()}

    def manage(*args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=servers.ROOT, env=manage_env, check=True, capture_output=True, timeout=180)

    manage("migrate", "-v", "0")
    manage("bootstrap_demo")
    key = (tmp_path / "var" / "demo-credentials.txt").read_text().split("api key (demo, inference_client): ")[1].split()[0]
    server_env = {**servers.PRODUCTION, **env, "RATELIMIT_ENABLE": "0", "WEB_CONCURRENCY": "2", "WEB_THREADS": "1"}
    server = servers.start("gunicorn", env=server_env, log=tmp_path / "server.log")
    try:
        server.wait_until_every_worker_is_ready()
        assert {role_of_one_answer(server.port, key, n) for n in range(20)} == {"production"}
        manage("shell", "-c", SET_CANARY)
        changed_at = time.monotonic()
        n, in_a_row = 0, 0
        while in_a_row < 40:  # forty answers in a row from the canary: both workers have it
            n += 1
            in_a_row = in_a_row + 1 if role_of_one_answer(server.port, key, n) == "canary" else 0
            assert time.monotonic() - changed_at < 2.0, f"after {time.monotonic() - changed_at:.2f} s a worker still serves production"
        print(f"{topology}: every answer from the canary {time.monotonic() - changed_at:.2f} s after the change")
    finally:
        server.stop()
