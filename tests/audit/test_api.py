"""The audit API: figures against hand-computed values, outcomes in, bad parameters named."""

import uuid

import pytest
from rest_framework.test import APIClient

from audit.models import Outcome
from audit.rollups.histograms import STEP
from mlops.security.authentication import api_keys
from mlops.services.api_keys import api_key_create
from tests.audit import dataset

BUCKET_WIDTH = STEP - 1  # a percentile read from the latency histogram is this close to the exact one

pytestmark = pytest.mark.django_db


def client_for(role: str) -> APIClient:
    _, key = api_key_create(client=f"audit-tests-{role}", role=role)
    api_keys.invalidate()  # a test never commits, so the key cache would not notice the new key
    return APIClient(headers={"X-API-Key": key})


@pytest.fixture
def auditor():
    return client_for("auditor")


@pytest.fixture
def service():
    return client_for("internal_service")


@pytest.fixture
def rows(production_version, canary_version):
    return dataset.build(production_version, canary_version)


def test_summary_matches_hand_computed_figures(auditor, rows):
    answer = auditor.get("/v1/audit/summary", {"product": "fraud_score", "since": "24h"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["total_rows"] == 12 and body["answers"] == 8
    counts = {(c["model"], c["role"], c["decision"]): c["count"] for c in body["counts"]}
    assert counts == {
        ("logreg@1", "production", "allow"): 3,
        ("logreg@1", "production", "block"): 2,
        ("logreg@1", "shadow", "allow"): 1,
        ("gbdt@1", "canary", "allow"): 1,
        ("gbdt@1", "canary", "block"): 1,
        ("gbdt@1", "canary", "review"): 1,
        ("gbdt@1", "shadow", "allow"): 1,
        ("gbdt@1", "shadow", "review"): 2,
    }
    # answering latencies sorted: 1 2 3 4 5 6 7 10; percentiles are read from histograms of 9% buckets
    assert body["latency_ms"] == pytest.approx({"p50": 4.5, "p95": 8.95, "p99": 9.79}, rel=BUCKET_WIDTH)
    assert body["cache_hit_rate"]["value"] == pytest.approx(0.25)
    assert body["shadow"]["runs"] == 4
    assert body["shadow"]["diff_classes"] == {"minimal": 2, "moderate": 1, "significant": 1}
    assert body["shadow"]["agreement_rate"]["value"] == pytest.approx(0.5)
    assert body["shadow"]["mean_score_diff"] == pytest.approx(0.085)
    outcomes = body["outcomes"]
    assert (outcomes["labelled"], outcomes["negatives"], outcomes["false_positives"], outcomes["true_positives"]) == (6, 5, 2, 1)
    assert outcomes["false_positive_rate"]["value"] == pytest.approx(0.4)


def test_compare_matches_hand_computed_figures(auditor, rows):
    answer = auditor.get("/v1/audit/compare", {"product": "fraud_score", "window": "1h"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    production, canary = body["production"], body["canary"]
    # Production answered p1..p4; the canary answered c1..c3 and failed over once (p5, answered by production).
    assert (production["requests"], production["answered"], production["failovers"]) == (4, 4, None)
    assert (canary["requests"], canary["answered"], canary["failovers"]) == (4, 3, 1)
    assert production["latency_ms"] == pytest.approx({"p50": 2.5, "p95": 3.85, "p99": 3.97}, rel=BUCKET_WIDTH)
    assert canary["latency_ms"] == pytest.approx({"p50": 6.0, "p95": 6.9, "p99": 6.98}, rel=BUCKET_WIDTH)
    assert {k: v["count"] for k, v in production["decision_mix"].items()} == {"allow": 2, "review": 0, "block": 2}
    assert {k: v["count"] for k, v in canary["decision_mix"].items()} == {"allow": 1, "review": 1, "block": 1}
    assert production["score"]["histogram"] == [0, 1, 0, 1, 0, 1, 0, 0, 1, 0]
    assert canary["score"]["histogram"] == [1, 0, 0, 0, 1, 0, 1, 0, 0, 0]
    assert production["score"]["mean"] == pytest.approx(0.4375)
    assert production["error_rate"] is None
    assert (canary["error_rate"]["count"], canary["error_rate"]["total"]) == (1, 4)
    # Each side's model as a shadow: logreg shadowed c1 (agreed); gbdt shadowed p1..p3 (agreed once).
    assert production["shadow"]["agreement_rate"]["value"] == pytest.approx(1.0)
    assert canary["shadow"]["agreement_rate"]["value"] == pytest.approx(1 / 3)
    assert production["outcomes"]["false_positive_rate"]["value"] == pytest.approx(1 / 3)
    assert canary["outcomes"]["false_positive_rate"]["value"] == pytest.approx(0.5)
    assert [v["model"] for v in canary["model_versions"]] == ["gbdt@1"]
    assert len(body["histogram_edges"]) == 11
    fp = body["evidence"]["false_positive_rate"]
    assert (fp["a"]["count"], fp["a"]["total"], fp["b"]["count"], fp["b"]["total"]) == (1, 2, 1, 3)
    assert fp["difference"] == pytest.approx(0.5 - 1 / 3) and fp["low"] < 0 < fp["high"] and fp["p_value"] == pytest.approx(1.0)
    assert body["verdicts"]["false_positive_rate"].startswith("no evidence of a difference (p=1.000); needs ")


def test_recent_is_paginated_newest_first(auditor, rows):
    first = auditor.get("/v1/audit/recent", {"product": "fraud_score", "limit": 5}).json()
    assert len(first["results"]) == 5
    second = auditor.get(first["next"]).json()
    third = auditor.get(second["next"]).json()
    seen = [r["prediction_id"] for r in first["results"] + second["results"] + third["results"]]
    assert len(seen) == len(set(seen)) == 13
    assert third["next"] is None
    created = [r["created_at"] for r in first["results"]]
    assert created == sorted(created, reverse=True)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/audit/summary", {"since": "yesterday-ish"}, "since"),
        ("/v1/audit/summary", {"product": "not a slug"}, "product"),
        ("/v1/audit/recent", {"limit": "0"}, "limit"),
        ("/v1/audit/recent", {"limit": "many"}, "limit"),
        ("/v1/audit/compare", {}, "product"),
        ("/v1/audit/compare", {"product": "fraud_score", "window": "3 weeks"}, "window"),
    ],
)
def test_bad_query_parameters_answer_400_naming_the_field(auditor, path, params, field):
    answer = auditor.get(path, params)
    assert answer.status_code == 400
    assert field in answer.json()["error"]["fields"]


def test_the_log_has_no_write_endpoint(auditor, service, rows):
    for method in ("post", "put", "patch", "delete"):
        assert getattr(auditor, method)("/v1/audit/recent").status_code == 405


def test_audit_reads_need_the_audit_capability(rows):
    assert APIClient().get("/v1/audit/summary").status_code == 401
    assert client_for("inference_client").get("/v1/audit/summary").status_code == 403


def test_post_one_outcome_and_a_list(service):
    one = {"product": "fraud_score", "event_id": "e1", "label": True, "observed_at": "2026-11-20T10:00:00Z"}
    assert service.post("/v1/outcomes", one, format="json").status_code == 201
    many = [
        {"product": "fraud_score", "event_id": "e1", "label": False, "source": "api"},  # replaces the first
        {"product": "fraud_score", "event_id": "e2", "label": True, "prediction_id": str(uuid.uuid4()), "source": "bank"},
    ]
    answer = service.post("/v1/outcomes", many, format="json")
    assert answer.status_code == 201 and answer.json() == {"recorded": 2}
    assert dict(Outcome.objects.values_list("event_id", "label")) == {"e1": False, "e2": True}


def test_bad_outcome_answers_400_naming_the_item_and_field(service):
    answer = service.post(
        "/v1/outcomes", [{"product": "fraud_score", "event_id": "e1", "label": True}, {"product": "fraud_score"}], format="json"
    )
    assert answer.status_code == 400
    fields = answer.json()["error"]["fields"]
    assert "1.event_id" in fields and "1.label" in fields
    assert not Outcome.objects.exists()


@pytest.mark.parametrize("field, value", [("source", 0), ("event_id", 17), ("label", "true"), ("prediction_id", 12345)])
def test_outcomes_refuse_a_value_of_another_json_type_than_documented(service, field, value):
    body = {"product": "fraud_score", "event_id": "evt-1", "label": True, field: value}
    answer = service.post("/v1/outcomes", body, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()["error"]["fields"]
    assert not Outcome.objects.exists()
