"""The hot lane over real HTTP (granian, two workers, as the Procfile's `infer`): what the in-process
contract suite (tests/inference/lane) cannot see: reading bodies off the socket, keep-alive, HEAD,
and the metrics page summing both workers."""

import http.client
import subprocess

import orjson
import pytest

from tests import servers

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lane(key, tmp_path):  # the key first: the workers load it at start
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    env = {
        **servers.PRODUCTION,
        "RATELIMIT_ENABLE": "0",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "AUDIT_SPILL_DIR": str(tmp_path / "spill"),
        "LOG_LEVEL": "WARNING",
    }
    server = servers.start("granian", env=env, log=tmp_path / "server.log")
    server.wait_until_every_worker_is_ready()
    yield server
    server.stop()


@pytest.fixture
def key(production_model) -> str:
    from mlops.services import api_key_create

    return api_key_create(client="lane-server", role="internal_service")[1]


def _body(features: dict, event_id: str) -> bytes:
    return orjson.dumps({"event_id": event_id, "product": "fraud_score", "features": features})


def _connection(lane) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", lane.port, timeout=10)


def test_one_connection_carries_many_predictions(lane, key, features):
    connection = _connection(lane)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    for index in range(20):
        connection.request("POST", "/v1/infer", body=_body(features, f"keep-{index}"), headers=headers)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        assert orjson.loads(response.read())["model_role"] == "production"
    connection.close()


def test_a_body_sent_in_chunks_is_read_and_bounded(lane, key, features):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}", "Transfer-Encoding": "chunked"}
    connection = _connection(lane)
    body = _body(features, "chunked")
    connection.request("POST", "/v1/infer", body=iter([body[:100], body[100:]]), headers=headers, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.read()
    huge = iter([b"x" * 65536, b"x" * 65536])  # no Content-Length to refuse it by: cut at the endpoint's limit
    connection.request("POST", "/v1/infer", body=huge, headers=headers, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    assert orjson.loads(response.read())["error"]["code"] == "payload_too_large"


def test_an_announced_oversized_body_is_refused_unread(lane, key):
    connection = _connection(lane)
    connection.putrequest("POST", "/v1/infer")
    for name, value in {"Content-Type": "application/json", "Authorization": f"Bearer {key}", "Content-Length": "70000"}.items():
        connection.putheader(name, value)
    connection.endheaders()  # and no body: the answer comes from the header alone
    response = connection.getresponse()
    assert response.status == 413
    assert "65536" in orjson.loads(response.read())["error"]["message"]


def test_head_answers_the_headers_of_get_without_a_body(lane):
    connection = _connection(lane)
    connection.request("HEAD", "/readyz")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Allow") == "GET, HEAD"
    assert response.read() == b""


def test_the_metrics_page_counts_every_workers_answers(lane, key, features, promtool):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    for index in range(8):  # a new connection each: both workers answer some
        connection = _connection(lane)
        connection.request("POST", "/v1/infer", body=_body(features, f"metrics-{index}"), headers=headers)
        assert connection.getresponse().status == 200
        connection.close()
    connection = _connection(lane)
    connection.request("POST", "/v1/infer", body=b"{}", headers={"Content-Type": "application/json"})
    assert connection.getresponse().status == 401
    connection.close()
    connection = _connection(lane)
    connection.request("GET", "/metrics")
    page = connection.getresponse().read().decode()
    result = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

    def total(prefix: str) -> float:
        return sum(float(line.split()[-1]) for line in page.splitlines() if line.startswith(prefix))

    assert total("mlops_inference_requests_total{") == 8
    assert total('mlops_lane_responses_total{endpoint="infer",status="200"}') == 8
    assert total('mlops_lane_responses_total{endpoint="infer",status="401"}') == 1
