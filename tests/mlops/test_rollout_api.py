"""Rollout API: answers, errors (400 naming fields, 404, 409) and who may call what."""

import uuid

import pytest
from rest_framework.test import APIClient

from mlops.models import CanaryConfig, RollbackEvent, RollbackReason
from mlops.security.authentication import api_keys
from mlops.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db

PRODUCT = "fraud_score"


def client_for(role: str) -> APIClient:
    _, key = api_key_create(client=f"tests-{role}", role=role)
    api_keys.invalidate()  # workers reload keys when the generation moves after a commit; a test never commits
    return APIClient(headers={"X-API-Key": key})


@pytest.fixture
def ops():
    return client_for("ml_ops")


@pytest.fixture
def viewer():
    return client_for("viewer")


def test_post_canary_starts_it_and_get_shows_it(ops, candidate, production_model):
    answer = ops.post(
        "/v1/canary",
        {"product": PRODUCT, "canary_model_id": str(candidate.pk), "canary_percent": 10, "reason": "first step"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    body = ops.get(f"/v1/canary/{PRODUCT}").json()
    assert body["canary_model"]["id"] == str(candidate.pk)
    assert body["production_model"]["id"] == str(production_model.pk)
    assert (body["canary_percent"], body["canary_basis_points"], body["active"]) == (10.0, 1000, True)
    assert "first step" in body["change_reason"]


def test_step_stop_and_promote(ops, canary):
    assert ops.post(f"/v1/canary/{PRODUCT}/step", {"reason": "healthy"}, format="json").json()["canary_percent"] == 25.0
    stopped = ops.post(f"/v1/canary/{PRODUCT}/stop", {"reason": "pause"}, format="json").json()
    assert (stopped["canary_percent"], stopped["canary_model"]["id"]) == (0.0, str(canary.canary_model_id))
    ops.post(f"/v1/canary/{PRODUCT}/step", {"reason": "resume"}, format="json")
    promoted = ops.post(f"/v1/canary/{PRODUCT}/promote", {"reason": "ship it"}, format="json")
    assert promoted.status_code == 200
    assert promoted.json()["production_model"]["id"] == str(canary.canary_model_id)
    assert promoted.json()["canary_model"] is None


def test_the_reason_is_optional_and_the_history_says_none_was_given_and_who_called(ops, candidate, production_model):
    started = ops.post(
        "/v1/canary",
        {"product": PRODUCT, "canary_model_id": str(candidate.pk), "production_model_id": str(production_model.pk), "canary_percent": 10},
        format="json",
    )
    assert started.status_code == 201, started.content
    assert started.json()["change_reason"] == "[api_key:tests-ml_ops] no reason given"
    stopped = ops.post(f"/v1/canary/{PRODUCT}/stop")  # no body at all, as curl -X POST sends it
    assert stopped.status_code == 200, stopped.content
    assert stopped.json()["canary_percent"] == 0.0
    history = CanaryConfig.history.filter(product=PRODUCT).order_by("-history_date").first()
    assert history.history_change_reason == "[api_key:tests-ml_ops] no reason given"


def test_the_canary_carries_the_seed_fields_and_keeps_its_start_when_its_share_moves(ops, candidate, production_model):
    body = {"product": PRODUCT, "canary_model_id": str(candidate.pk), "canary_percent": 10}
    first = ops.post("/v1/canary", body, format="json").json()
    moved = ops.post("/v1/canary", {**body, "canary_percent": 25}, format="json").json()
    assert (moved["canary_model_id"], moved["production_model_id"]) == (str(candidate.pk), str(production_model.pk))
    assert moved["canary_percent"] == 25.0
    assert moved["started_at"] == first["started_at"]
    assert moved["updated_at"] > first["updated_at"]
    ops.post(f"/v1/canary/{PRODUCT}/stop", format="json")
    restarted = ops.post("/v1/canary", body, format="json").json()
    assert restarted["started_at"] > first["started_at"]


def test_bad_fields_are_named(ops, candidate):
    answer = ops.post("/v1/canary", {"product": PRODUCT, "canary_model_id": "nope", "canary_percent": 150}, format="json")
    assert answer.status_code == 400
    assert set(answer.json()["error"]["fields"]) == {"canary_model_id", "canary_percent"}
    unknown = ops.post(
        "/v1/canary", {"product": PRODUCT, "canary_model_id": str(uuid.uuid4()), "canary_percent": 10, "reason": "x"}, format="json"
    )
    assert list(unknown.json()["error"]["fields"]) == ["canary_model_id"]


def test_unknown_product_is_404(ops, viewer, production_model):
    assert viewer.get("/v1/canary/nosuch").status_code == 404
    assert ops.post("/v1/canary/nosuch/stop", {"reason": "x"}, format="json").status_code == 404
    assert viewer.get("/v1/shadow/nosuch").status_code == 404


def test_illegal_state_is_409_with_the_reason(ops, production_model):
    answer = ops.post(
        "/v1/canary", {"product": PRODUCT, "canary_model_id": str(production_model.pk), "canary_percent": 10, "reason": "x"}, format="json"
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "illegal_state"
    assert "production version" in answer.json()["error"]["message"]
    assert ops.post(f"/v1/canary/{PRODUCT}/step", {"reason": "x"}, format="json").status_code == 409


def test_shadow_enable_disable_and_clear(ops, viewer, candidate, settings):
    settings.SHADOW_MODELS = {}
    enabled = ops.post(
        f"/v1/shadow/{PRODUCT}/enable", {"shadow_model_id": str(candidate.pk), "sample_percent": 25, "reason": "compare"}, format="json"
    )
    assert enabled.status_code == 200, enabled.content
    assert (enabled.json()["source"], enabled.json()["enabled"], enabled.json()["sample_percent"]) == ("override", True, 25.0)
    disabled = ops.post(f"/v1/shadow/{PRODUCT}/disable", {"reason": "enough"}, format="json").json()
    assert (disabled["source"], disabled["enabled"]) == ("override", False)
    assert ops.delete(f"/v1/shadow/{PRODUCT}/override", {"reason": "default"}, format="json").json()["source"] == "none"
    assert ops.delete(f"/v1/shadow/{PRODUCT}/override").json()["source"] == "none"  # no reason: recorded as none given
    assert viewer.get(f"/v1/shadow/{PRODUCT}").json()["source"] == "none"


def test_rollbacks_are_listed_per_product(ops, viewer, canary):
    RollbackEvent.objects.create(
        product=PRODUCT,
        model_version_id=canary.canary_model_id,
        reason=RollbackReason.HIGH_ERROR_RATE,
        measured={"error_rate": 0.4},
        window_seconds=300,
        created_at=canary.changed_at,
    )
    body = viewer.get(f"/v1/rollbacks?product={PRODUCT}").json()
    assert [(e["reason"], e["measured"]["error_rate"]) for e in body["results"]] == [("high_error_rate", 0.4)]
    assert viewer.get("/v1/rollbacks?product=nosuch").status_code == 404


def test_viewer_reads_but_cannot_change(viewer, canary):
    assert viewer.get(f"/v1/canary/{PRODUCT}").status_code == 200
    assert viewer.post(f"/v1/canary/{PRODUCT}/step", {"reason": "x"}, format="json").status_code == 403
    assert viewer.post(f"/v1/shadow/{PRODUCT}/disable", {"reason": "x"}, format="json").status_code == 403
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 1000


def test_inference_clients_and_anonymous_callers_see_nothing(canary):
    assert client_for("inference_client").get(f"/v1/canary/{PRODUCT}").status_code == 403
    assert APIClient().get(f"/v1/canary/{PRODUCT}").status_code == 401
    assert APIClient().post(f"/v1/canary/{PRODUCT}/stop", {"reason": "x"}, format="json").status_code == 401


def test_an_unknown_model_version_in_a_body_is_404_naming_the_field(ops, production_model):
    answer = ops.post(f"/v1/shadow/{PRODUCT}/enable", {"shadow_model_id": str(uuid.uuid4()), "reason": "try"}, format="json")
    assert answer.status_code == 404, answer.content
    assert answer.json()["error"]["code"] == "not_found"
    assert set(answer.json()["error"]["fields"]) == {"shadow_model_id"}


def test_an_unknown_product_in_a_body_is_404_naming_the_field(ops, candidate):
    body = {"product": "no_such_product", "canary_model_id": str(candidate.pk), "canary_percent": 10, "reason": "go"}
    answer = ops.post("/v1/canary", body, format="json")
    assert answer.status_code == 404, answer.content
    assert set(answer.json()["error"]["fields"]) == {"product"}


def test_a_malformed_field_beside_an_unknown_id_is_still_400(ops, production_model):
    answer = ops.post(f"/v1/shadow/{PRODUCT}/enable", {"shadow_model_id": str(uuid.uuid4()), "reason": 7}, format="json")
    assert answer.status_code == 400
    assert set(answer.json()["error"]["fields"]) == {"shadow_model_id", "reason"}


def test_a_percentage_is_a_number_rounded_to_a_basis_point(ops, candidate, production_model):
    body = {"product": PRODUCT, "canary_model_id": str(candidate.pk), "reason": "go"}
    assert ops.post("/v1/canary", {**body, "canary_percent": "10"}, format="json").status_code == 400  # a string
    answer = ops.post("/v1/canary", {**body, "canary_percent": 12.345}, format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["canary_basis_points"] == 1235


def test_automatic_promotion_is_off_unless_asked_for_and_kept_when_the_share_moves(ops, candidate, production_model):
    body = {"product": PRODUCT, "canary_model_id": str(candidate.pk), "canary_percent": 10}
    first = ops.post("/v1/canary", body, format="json").json()
    opted_in = ops.post("/v1/canary", {**body, "auto_promote": True}, format="json").json()
    moved = ops.post("/v1/canary", {**body, "canary_percent": 25}, format="json").json()

    assert (first["auto_promote"], opted_in["auto_promote"], moved["auto_promote"]) == (False, True, True)
    assert moved["step_started_at"] > first["step_started_at"] and opted_in["step_started_at"] == first["step_started_at"]
    assert ops.post("/v1/canary", {**body, "auto_promote": "yes"}, format="json").status_code == 400
