"""One contract, two lanes: every status, header and body field of the hot endpoints is the same
whether the DRF views or the hot lane (`inference.lane`) answer, for good requests and bad.

Each test asks both lanes the same and compares what a client sees; the fields that differ by
nature (a prediction's id, its latency, its time) are compared by shape.
"""

import re
import uuid

import orjson
import pytest

from inference import cache
from mlops.demo import PRODUCT
from tests.mlops.security.conftest import bearer, create_key, make_jwt

pytestmark = pytest.mark.django_db(transaction=True)

VOLATILE = {"prediction_id", "latency_ms", "created_at"}


@pytest.fixture(autouse=True)
def contract_settings(credential_settings):
    """Known credentials for both lanes (the rate-limit test turns the limits on)."""


@pytest.fixture
def service_key(serving) -> dict:
    return bearer(create_key("internal_service", client="contract"))


def _stable(value):
    """The reply body with the fields that differ by nature replaced by their type."""
    if isinstance(value, dict):
        return {key: type(item).__name__ if key in VOLATILE else _stable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stable(item) for item in value]
    return value


def assert_same(drf, hot):
    assert (hot.status, hot.headers) == (drf.status, drf.headers)
    assert _stable(hot.json()) == _stable(drf.json())


def request(features, event_id="evt-1", product=PRODUCT, **extra) -> dict:
    return {"event_id": event_id, "product": product, "features": features, **extra}


def test_a_prediction_is_answered_alike(lanes, service_key, features):
    drf, hot = lanes.both("POST", "/v1/infer", request(features), service_key)
    assert drf.status == 200
    assert_same(drf, hot)
    assert hot.json()["prediction_id"] != drf.json()["prediction_id"]


def test_seed_payload_envelope_is_answered_alike(lanes, service_key, features):
    drf, hot = lanes.both("POST", "/v1/infer", {"event_id": "evt-2", "product": PRODUCT, "payload": {"features": features}}, service_key)
    assert drf.status == 200
    assert_same(drf, hot)


def test_a_batch_is_answered_alike_item_by_item(lanes, service_key, features):
    bad = {**features, "mean_radius": "wide"}
    body = {"items": [request(features, "a"), request(bad, "b"), request(features, "c", product="nope")]}
    drf, hot = lanes.both("POST", "/v1/infer/batch", body, service_key)
    assert drf.status == 400
    assert_same(drf, hot)
    drf, hot = lanes.both("POST", "/v1/infer/batch", {"items": [request(features, "a"), request(features, "b")]}, service_key)
    assert drf.status == 200
    assert_same(drf, hot)


def test_values_the_model_cannot_score_are_refused_alike_naming_them(lanes, service_key, features):
    # float32-representable, but the demo model's scaler overflows them to a NaN score.
    extreme = {name: (3e38 if index % 2 else -3e38) for index, name in enumerate(features)}
    drf, hot = lanes.both("POST", "/v1/infer", request(extreme), service_key)
    assert (drf.status, drf.json()["error"]["code"], list(drf.json()["error"]["fields"])) == (422, "unscorable_input", ["features"])
    assert_same(drf, hot)
    body = {"items": [request(features, "a"), request(extreme, "b")]}
    drf, hot = lanes.both("POST", "/v1/infer/batch", body, service_key)
    assert (drf.status, list(drf.json()["error"]["fields"])) == (422, ["items.1.features"])
    assert_same(drf, hot)


def test_a_recorded_prediction_reads_back_alike(lanes, service_key, features):
    made = lanes.hot("POST", "/v1/infer", orjson.dumps(request(features, "read-back")), service_key).json()
    drf, hot = lanes.both("GET", f"/v1/infer/{made['prediction_id']}", headers=service_key)
    assert drf.status == 200
    assert_same(drf, hot)
    assert hot.json()["prediction_id"] == made["prediction_id"]


@pytest.mark.parametrize("prediction_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_prediction_is_not_found_alike(lanes, service_key, prediction_id):
    drf, hot = lanes.both("GET", f"/v1/infer/{prediction_id}", headers=service_key)
    assert drf.status == 404
    assert_same(drf, hot)


def test_another_clients_prediction_is_not_found_alike(lanes, serving, service_key, features):
    made = lanes.hot("POST", "/v1/infer", orjson.dumps(request(features, "theirs")), service_key).json()
    other = bearer(create_key("inference_client", client="someone-else"))
    drf, hot = lanes.both("GET", f"/v1/infer/{made['prediction_id']}", headers=other)
    assert drf.status == 404
    assert_same(drf, hot)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda body: {**body, "features": {**body["features"], "mean_radius": None}}, id="null-feature"),
        pytest.param(lambda body: {**body, "features": {k: v for k, v in body["features"].items() if k != "mean_radius"}}, id="missing"),
        pytest.param(lambda body: {**body, "features": {**body["features"], "colour": 1.0}}, id="extra-feature"),
        pytest.param(lambda body: {**body, "product": "unknown"}, id="unknown-product"),
        pytest.param(lambda body: {k: v for k, v in body.items() if k != "event_id"}, id="no-event-id"),
        pytest.param(lambda body: {**body, "event_id": "evt\x00-1"}, id="nul-in-event-id"),  # the log could not record it
        pytest.param(lambda body: {**body, "surprise": 1}, id="unknown-field"),
        pytest.param(lambda body: [body], id="not-an-object"),
    ],
)
def test_invalid_input_is_refused_alike(lanes, service_key, features, change):
    drf, hot = lanes.both("POST", "/v1/infer", change(request(features)), service_key)
    assert drf.status == 400
    assert_same(drf, hot)


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        pytest.param(b"{not json", {}, 400, id="malformed-json"),
        pytest.param(b"", {}, 400, id="empty-body"),
        pytest.param(b"x" * (64 * 1024 + 1), {}, 413, id="over-the-endpoint-limit"),
        pytest.param(b"{}", {"Content-Length": str(2 * 1024 * 1024)}, 413, id="over-the-api-limit"),
    ],
)
def test_bodies_that_cannot_be_read_are_refused_alike(lanes, service_key, body, headers, status):
    drf, hot = lanes.both("POST", "/v1/infer", body, {**service_key, **headers})
    assert drf.status == status
    assert_same(drf, hot)


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({}, id="none"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic"),
        pytest.param({"Authorization": "Bearer "}, id="empty-bearer"),
        pytest.param({"Authorization": "Bearer mlk_nope"}, id="malformed-key"),
        pytest.param({"Authorization": "Bearer mlk_0123456789.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}, id="unknown-key"),
        pytest.param({"X-API-Key": "mlk_0123456789.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}, id="unknown-x-api-key"),
        pytest.param({"Authorization": "Bearer not.a.jwt"}, id="garbage-jwt"),
    ],
)
def test_bad_credentials_are_refused_alike(lanes, serving, features, credentials):
    drf, hot = lanes.both("POST", "/v1/infer", request(features), credentials)
    assert drf.status == 401
    assert_same(drf, hot)


def test_an_expired_token_is_refused_alike(lanes, serving, features):
    drf, hot = lanes.both("POST", "/v1/infer", request(features), bearer(make_jwt(exp_in=-120)))
    assert drf.status == 401
    assert_same(drf, hot)


def test_a_token_with_the_role_predicts_alike(lanes, serving, features):
    drf, hot = lanes.both("POST", "/v1/infer", request(features), bearer(make_jwt(["internal_service"])))
    assert drf.status == 200
    assert_same(drf, hot)


@pytest.mark.parametrize("role", ["viewer", "auditor"])
def test_a_role_without_the_capability_is_forbidden_alike(lanes, serving, features, role):
    drf, hot = lanes.both("POST", "/v1/infer", request(features), bearer(create_key(role)))
    assert drf.status == 403
    assert_same(drf, hot)


def test_a_token_without_a_role_is_forbidden_alike(lanes, serving, features):
    drf, hot = lanes.both("POST", "/v1/infer", request(features), bearer(make_jwt(["no-such-role"])))
    assert drf.status == 403
    assert_same(drf, hot)


def test_rate_limits_count_and_refuse_alike(lanes, serving, settings, features):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_PREDICT = "2/m"
    settings.RATELIMIT_PREDICT_BURST = ""
    replies = {"drf": [], "hot": []}
    for lane in replies:
        key = bearer(create_key("inference_client", client=f"limited-{lane}"))
        for n in range(3):
            cache.reset()
            replies[lane].append(getattr(lanes, lane)("POST", "/v1/infer", orjson.dumps(request(features, f"{lane}-{n}")), key))
    assert [reply.status for reply in replies["drf"]] == [200, 200, 429]
    for drf, hot in zip(replies["drf"], replies["hot"], strict=True):
        # Seconds until the window ends differ between the two moments asked: compare their shape.
        assert ("retry-after" in hot.headers) == ("retry-after" in drf.headers) == (drf.status == 429)
        for reply in (drf, hot):
            reply.headers.pop("retry-after", None)
            reply.body = re.sub(rb"retry in \d+ s", b"retry in N s", reply.body)
        assert_same(drf, hot)


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/infer"), ("OPTIONS", "/v1/infer"), ("DELETE", "/v1/infer/batch")])
def test_a_wrong_method_is_refused_alike(lanes, service_key, method, path):
    drf, hot = lanes.both(method, path, headers=service_key)
    assert drf.status == 405
    assert_same(drf, hot)


def test_an_unknown_endpoint_is_not_found_alike(lanes, service_key):
    drf, hot = lanes.both("POST", "/v1/inferx", headers=service_key)
    assert drf.status == 404
    assert_same(drf, hot)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_alike(lanes, serving, path):
    drf, hot = lanes.both("GET", path)
    assert drf.status == 200
    assert_same(drf, hot)
