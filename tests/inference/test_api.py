"""The inference API over HTTP (Django's test client): shapes, status codes and every bad input."""

import time
import uuid
from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from audit import writer
from inference.runtime import runtime
from mlops import services as registry
from mlops.demo import PRODUCT
from tests.audit.conftest import make_rows, make_version, uuid7_at

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(settings):
    """A client with credentials allowed to predict, read predictions and read models, not rate limited."""
    settings.RATELIMIT_ENABLE = False
    headers = {}
    if hasattr(registry, "api_key_create"):  # authentication (security issue) is in place
        from mlops.security import authentication

        _, key = registry.api_key_create(client="inference-tests", role="internal_service")
        authentication.api_keys.invalidate()  # the process's key cache reloads on next use
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    client = Client(**headers)

    def call(method: str, path: str, body=None, *, raw: bytes | None = None, **extra):
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else b"")
        if method == "get":
            return client.get(path, **extra)
        return client.generic(method.upper(), path, data, content_type="application/json", **extra)

    return call


def _infer(api, features, event_id="evt-1", product=PRODUCT):
    return api("post", "/v1/infer", {"event_id": event_id, "product": product, "features": features})


def _fields(response) -> dict:
    return orjson.loads(response.content)["error"].get("fields", {})


def _invalid(reason: str) -> float:
    return REGISTRY.get_sample_value("mlops_inference_invalid_inputs_total", {"reason": reason}) or 0.0


def test_infer_answers_the_documented_shape(api, serving, events):
    response = _infer(api, events[0])
    assert response.status_code == 200
    body = orjson.loads(response.content)
    assert set(body) == {
        "prediction_id",
        "model_id",
        "model_version",
        "model_role",
        "score",
        "decision",
        "explain_summary",
        "latency_ms",
        "cached",
    }
    assert body["model_id"] == str(serving.pk) and body["model_version"] == "1" and body["model_role"] == "production"
    assert 0.0 <= body["score"] <= 1.0 and body["decision"] in {"allow", "review", "block"}
    assert 1 <= len(body["explain_summary"]) <= 5 and body["cached"] is False


def test_seed_payload_form_gives_the_same_answer(api, serving, events):
    direct = orjson.loads(_infer(api, events[1]).content)
    # The seed's payload is the whole event: its other fields are the client's context, not features.
    payload = {"amount": 150.50, "currency": "USD", "country": "US", "payment_method": "card", "features": events[1]}
    nested = orjson.loads(api("post", "/v1/infer", {"event_id": "evt-1", "product": PRODUCT, "payload": payload}).content)
    assert (nested["score"], nested["decision"], nested["model_id"]) == (direct["score"], direct["decision"], direct["model_id"])
    assert nested["cached"] is True


def test_a_prediction_can_be_read_back_at_once_and_from_the_database(api, serving, events):
    posted = orjson.loads(_infer(api, events[2]).content)
    response = api("get", f"/v1/infer/{posted['prediction_id']}")
    assert response.status_code == 200
    read = orjson.loads(response.content)
    assert (read["score"], read["decision"], read["model_version"]) == (posted["score"], posted["decision"], "1")
    writer.flush(10)
    from audit.models import PredictionLog

    assert PredictionLog.objects.filter(pk=posted["prediction_id"]).exists()


def test_an_unknown_prediction_is_404(api, serving):
    assert api("get", f"/v1/infer/{uuid.uuid4()}").status_code == 404
    assert api("get", "/v1/infer/not-a-uuid").status_code == 404


def test_batch_answers_each_item_in_order(api, serving, events):
    items = [{"event_id": f"b{i}", "product": PRODUCT, "features": events[i]} for i in range(10)]
    response = api("post", "/v1/infer/batch", {"items": items})
    assert response.status_code == 200
    answers = orjson.loads(response.content)["items"]
    assert len(answers) == 10
    for i in (0, 9):
        single = orjson.loads(_infer(api, events[i], event_id=f"b{i}").content)
        assert single["score"] == pytest.approx(answers[i]["score"]) and single["cached"] is True


def test_models_health_and_readiness(api, production_model):
    assert api("get", "/healthz").status_code == 200
    assert api("get", "/readyz").status_code == 503
    runtime.refresh()
    assert api("get", "/readyz").status_code == 200
    listed = orjson.loads(api("get", "/v1/models").content)
    models = listed["models"]
    assert [(m["name"], m["role"]) for m in models] == [("logreg", "production")] and models[0]["loaded_at"]
    assert listed["total"] == 1
    features = models[0]["input_schema"]["features"]  # what a client must send, without provoking a 400
    assert len(features) == 30 and features[0] == {"name": "mean_radius", "type": "float"}
    assert models[0]["input_schema"]["tensors"][0]["shape"] == [None, 30]


def test_metrics_are_exposed(api, serving, events):
    _infer(api, events[0])
    text = api("get", "/metrics").content.decode()
    assert "mlops_inference_requests_total" in text and "mlops_inference_latency_seconds_bucket" in text


# --- bad input: 400 naming each bad field, never a 500 -----------------------------------------


def test_unknown_product(api, serving, events):
    before = _invalid("unknown_product")
    response = _infer(api, events[0], product="no_such_product")
    assert response.status_code == 400 and "product" in _fields(response)
    assert _invalid("unknown_product") == before + 1


def test_missing_and_extra_features_are_each_named(api, serving, events):
    features = dict(events[0])
    del features["mean_radius"]
    features["favourite_colour"] = 3
    response = _infer(api, features)
    assert response.status_code == 400
    assert set(_fields(response)) == {"features.mean_radius", "features.favourite_colour"}


@pytest.mark.parametrize("value", ["12.5", None, True, [1], {"a": 1}])
def test_non_numeric_feature(api, serving, events, value):
    response = _infer(api, {**events[0], "mean_texture": value})
    assert response.status_code == 400 and list(_fields(response)) == ["features.mean_texture"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_nan_and_infinity_are_refused(api, serving, events, literal):
    body = orjson.dumps({"event_id": "e", "product": PRODUCT, "features": {**events[0], "mean_texture": 0.0}})
    body = body.replace(b'"mean_texture":0.0', b'"mean_texture":' + literal)
    response = api("post", "/v1/infer", raw=body)
    assert response.status_code == 400 and "body" in _fields(response)


def test_a_value_beyond_the_model_range_is_refused(api, serving, events):
    response = _infer(api, {**events[0], "mean_area": 1e39})  # finite in JSON, infinite as float32
    assert response.status_code == 400 and list(_fields(response)) == ["features.mean_area"]


@pytest.mark.parametrize("raw", [b"{", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_malformed_json_or_not_an_object(api, serving, raw):
    response = api("post", "/v1/infer", raw=raw)
    assert response.status_code == 400 and "body" in _fields(response)


def test_missing_envelope_fields_are_named(api, serving):
    response = api("post", "/v1/infer", {"features": {}})
    assert response.status_code == 400 and {"event_id", "product"} <= set(_fields(response))


def test_body_too_large_is_refused_before_it_is_parsed(api, serving, settings):
    settings.INFERENCE_MAX_BODY_BYTES = 1_000
    before = _invalid("body_too_large")
    response = api("post", "/v1/infer", raw=b"{" + b" " * 2_000)  # not even JSON: never parsed
    assert response.status_code == 413 and orjson.loads(response.content)["error"]["code"] == "payload_too_large"
    assert _invalid("body_too_large") == before + 1


def test_batch_too_large(api, serving, events, settings):
    settings.INFERENCE_BATCH_MAX_ITEMS = 3
    items = [{"event_id": f"b{i}", "product": PRODUCT, "features": events[0]} for i in range(4)]
    response = api("post", "/v1/infer/batch", {"items": items})
    assert response.status_code == 400 and list(_fields(response)) == ["items"]


def test_batch_names_the_bad_fields_of_each_item(api, serving, events):
    items = [
        {"event_id": "ok", "product": PRODUCT, "features": events[0]},
        {"event_id": "bad", "product": PRODUCT, "features": {**events[0], "mean_radius": "x"}},
        {"event_id": "", "product": PRODUCT, "features": events[0]},
        {"event_id": "x", "product": "nope", "features": events[0]},
    ]
    response = api("post", "/v1/infer/batch", {"items": items})
    assert response.status_code == 400
    assert set(_fields(response)) == {"items.1.features.mean_radius", "items.2.event_id", "items.3.product"}


def test_before_the_first_load_infer_is_503_not_500(api, production_model, events):
    response = _infer(api, events[0])
    assert response.status_code == 503 and orjson.loads(response.content)["error"]["code"] == "not_ready"


def test_latency_is_reported(api, serving, events):
    started = time.perf_counter()
    body = orjson.loads(_infer(api, events[3]).content)
    assert 0 < body["latency_ms"] < (time.perf_counter() - started) * 1000 + 1


@pytest.mark.parametrize("features", ["events", None], ids=["features", "null features"])
def test_both_body_forms_at_once_are_refused_naming_payload(api, serving, events, features):
    body = {"event_id": "evt-1", "product": PRODUCT, "payload": {"features": events[0]}, "features": events[0] if features else None}
    response = api("post", "/v1/infer", body)
    assert response.status_code == 400
    assert set(_fields(response)) == {"payload"}


def test_the_schema_states_each_products_features_in_both_body_forms(settings, serving):
    settings.API_DOCS_PUBLIC = True
    schema = orjson.loads(Client().get("/api/schema/?format=json").content)["components"]["schemas"]
    forms = schema["InferRequestRequest"]["oneOf"]
    assert [sorted(form["required"]) for form in forms] == [["event_id", "features", "product"], ["event_id", "payload", "product"]]
    assert all(form["properties"]["product"]["enum"] == [PRODUCT] and form["additionalProperties"] is False for form in forms)
    features = schema[f"Features.{PRODUCT}"]
    assert features["required"] == serving.feature_names and features["additionalProperties"] is False


def test_old_and_new_predictions_are_read_back_from_the_partitioned_log(api):
    version = make_version()
    now = timezone.now()
    made = {
        "new": (uuid7_at(now), now),
        "forty days old": (uuid7_at(now - timedelta(days=40)), now - timedelta(days=40)),
        "an older log's random id": (uuid.uuid4(), now - timedelta(days=400)),
    }
    for prediction_id, created_at in made.values():
        make_rows(version, prediction_id=prediction_id, created_at=created_at)
    for what, (prediction_id, _) in made.items():
        response = api("get", f"/v1/infer/{prediction_id}")
        assert response.status_code == 200, what
        assert orjson.loads(response.content)["prediction_id"] == str(prediction_id)
    assert api("get", f"/v1/infer/{uuid7_at(now - timedelta(days=40))}").status_code == 404
