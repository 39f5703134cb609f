"""``GET /v1/models/{id}/health``: a version's health over a window, by the one definition the
comparison uses, and how this process loaded and warmed it."""

import uuid

import pytest

from audit import writer
from tests.conftest import infer

pytestmark = pytest.mark.django_db(transaction=True)


def health(api, model_id, **query):
    return api.get(f"/v1/models/{model_id}/health", query)


def test_a_served_version_reports_its_traffic_the_way_the_comparison_does(serving, api, features):
    for index in range(5):
        assert infer(api, features, event_id=f"health-{index}").status_code == 200
    assert writer.flush(10)
    answer = health(api, serving.pk)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    (production,) = body["roles"]
    assert (production["role"], production["requests"], production["answered"]) == ("production", 5, 5)
    assert production["cache_hit_rate"]["total"] == 5 and production["latency_ms"]["p95"] > 0
    assert body["window_seconds"] == 3600 and body["status"] == "production"
    assert body["serving"]["role"] == "production" and body["serving"]["warm_up_ms"] > 0 and body["serving"]["loaded_at"]
    compared = api.get("/v1/audit/compare", {"product": serving.product, "window": "1h"}).json()["production"]
    assert {key: compared[key] for key in ("requests", "answered", "latency_ms", "cache_hit_rate", "decision_mix", "score")} == {
        key: production[key] for key in ("requests", "answered", "latency_ms", "cache_hit_rate", "decision_mix", "score")
    }


def test_a_version_without_traffic_has_no_roles_and_one_this_process_does_not_serve_no_serving_copy(serving, api, candidate):
    body = health(api, candidate.pk, window="10m").json()
    assert (body["roles"], body["serving"], body["window_seconds"], body["status"]) == ([], None, 600, "validated")


def test_an_unknown_version_is_404_and_a_bad_window_names_the_field(serving, api):
    missing = health(api, uuid.uuid4())
    assert missing.status_code == 404 and missing.json()["error"]["code"]
    bad = health(api, serving.pk, window="soon")
    assert bad.status_code == 400 and "window" in bad.json()["error"]["fields"]
