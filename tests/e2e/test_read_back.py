"""GET /v1/infer/{id} right after the POST answers 200 whichever worker each lands on, and after
a restart from the database."""

import http.client
import json

import pytest

from mlops import services
from mlops.demo import demo_feature_names
from tests import servers

pytestmark = pytest.mark.django_db(transaction=True)
PAIRS = 500


def call(port: int, key: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One request on a new connection, so that the kernel hands it to either worker."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, payload


def test_a_read_back_right_after_the_answer_finds_it_on_any_worker(production_model, tmp_path):
    _, key = services.api_key_create(client="read-back", role="internal_service")
    env = {**servers.PRODUCTION, "RATELIMIT_ENABLE": "0", "WEB_CONCURRENCY": "2", "WEB_THREADS": "1"}
    features = dict.fromkeys(demo_feature_names(), 1.0)
    server = servers.start("gunicorn", env=env, log=tmp_path / "server.log")
    try:
        server.wait_until_every_worker_is_ready()
        statuses, answered = [], []
        for n in range(PAIRS):
            status, answer = call(
                server.port, key, "POST", "/v1/infer", {"product": "fraud_score", "event_id": f"e{n}", "features": features}
            )
            assert status == 200, answer
            answered.append(answer["prediction_id"])
            status, read = call(server.port, key, "GET", f"/v1/infer/{answer['prediction_id']}")
            statuses.append(status)
            assert status != 200 or read["prediction_id"] == answer["prediction_id"]
    finally:
        server.stop()
    assert statuses.count(200) == PAIRS, f"{PAIRS - statuses.count(200)} read-backs were not 200: {set(statuses)}"

    server = servers.start("gunicorn", env=env, log=tmp_path / "restarted.log")
    try:
        status, read = call(server.port, key, "GET", f"/v1/infer/{answered[0]}")  # no writer holds it now
    finally:
        server.stop()
    assert (status, read["event_id"]) == (200, "e0")
