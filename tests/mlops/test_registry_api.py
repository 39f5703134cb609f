"""Registry API: a pipeline registers a version over HTTP; people read, promote and roll back versions."""

import hashlib
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from mlops.artifacts.stores import store_from_url
from mlops.models import ModelVersion, RollbackEvent
from mlops.security.authentication import api_keys
from mlops.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db

PRODUCT = "fraud_score"


def client_for(role: str, name: str = "") -> APIClient:
    _, key = api_key_create(client=name or f"tests-{role}", role=role)
    api_keys.invalidate()  # workers reload keys when the generation moves after a commit; a test never commits
    return APIClient(headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def ops():
    return client_for("ml_ops", "training-pipeline")


@pytest.fixture
def store_url(settings, tmp_path):
    settings.MODEL_STORE_URL = (tmp_path / "api-store").as_uri()
    return settings.MODEL_STORE_URL


def upload(demo, **fields):
    return {
        "file": SimpleUploadedFile("model.onnx", Path(demo.path).read_bytes(), content_type="application/octet-stream"),
        "product": PRODUCT,
        "name": "gbdt",
        "version": "2",
        **fields,
    }


def test_a_pipeline_registers_a_version_over_http_as_a_candidate_in_the_store(ops, store_url, demo_model_files):
    demo = demo_model_files["gbdt"]
    answer = ops.post("/v1/models", upload(demo, threshold="0.4", description="retrained", reason="nightly run 812"), format="multipart")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert answer["Location"] == f"/v1/models/{body['model_id']}"
    assert (body["status"], body["threshold"], body["description"]) == ("candidate", 0.4, "retrained")
    assert body["sha256"] == hashlib.sha256(Path(demo.path).read_bytes()).hexdigest()
    assert [artifact.version for artifact in store_from_url(store_url).discover()] == ["2"]  # what every worker downloads
    history = ModelVersion.history.filter(id=body["model_id"]).first()
    assert history.history_change_reason.startswith("[api_key:training-pipeline] nightly run 812 (")
    assert len(body["input_schema"]["features"]) == 30


def test_registration_refuses_what_it_cannot_serve_naming_the_field(ops, store_url, demo_model_files):
    demo = demo_model_files["gbdt"]
    broken = upload(demo)
    broken["file"] = SimpleUploadedFile("model.onnx", b"not an onnx graph")
    answer = ops.post("/v1/models", broken, format="multipart")
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "unservable_model")
    assert list(answer.json()["error"]["fields"]) == ["file"]
    answer = ops.post("/v1/models", upload(demo, product="Fraud Score", threshold="2"), format="multipart")
    assert set(answer.json()["error"]["fields"]) == {"product", "threshold"}
    assert ops.post("/v1/models", upload(demo), format="multipart").status_code == 201
    again = ops.post("/v1/models", upload(demo), format="multipart")
    assert again.status_code == 409
    assert "already registered" in again.json()["error"]["message"]
    as_json = ops.post("/v1/models", {"product": PRODUCT}, format="json")
    assert (as_json.status_code, as_json.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert not ModelVersion.objects.filter(product="Fraud Score").exists()


def test_only_roles_that_manage_models_register_them(store_url, demo_model_files, settings):
    settings.RATELIMIT_ENABLE = False
    for role, status in (("viewer", 403), ("inference_client", 403), ("internal_service", 201)):
        answer = client_for(role).post("/v1/models", upload(demo_model_files["gbdt"], version=role), format="multipart")
        assert answer.status_code == status, (role, answer.content)
    assert client_for("viewer").get("/v1/models").status_code == 200  # reading the list stays read_models


def test_an_upload_above_its_limit_is_refused_before_it_is_read(ops, store_url, demo_model_files, settings):
    settings.MODEL_UPLOAD_MAX_BYTES = 1024
    answer = ops.post("/v1/models", upload(demo_model_files["gbdt"]), format="multipart")
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "payload_too_large")


def test_a_version_reads_with_its_input_schema(ops, production_model):
    body = ops.get(f"/v1/models/{production_model.pk}").json()
    assert (body["model_id"], body["status"], body["name"]) == (str(production_model.pk), "production", "logreg")
    assert body["input_schema"]["features"][0] == {"name": "mean_radius", "type": "float"}
    assert body["input_schema"]["tensors"] == [{"name": "X", "type": "float", "shape": [None, 30]}]
    missing = ops.get(f"/v1/models/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


def test_promote_moves_a_version_to_each_target_and_records_who_and_why(ops, production_model, push_demo):
    version = push_demo("gbdt")
    validated = ops.post(f"/v1/models/{version.pk}/promote", {"target": "validated", "reason": "offline AUC 0.98"}, format="json")
    assert (validated.status_code, validated.json()["status"]) == (200, "validated")
    assert validated.json()["change_reason"] == "[api_key:training-pipeline] offline AUC 0.98"
    promoted = ops.post(f"/v1/models/{version.pk}/promote", {"target": "production"}, format="json")
    assert promoted.json()["status"] == "production"
    assert ModelVersion.objects.get(pk=production_model.pk).status == "archived"
    other = push_demo("logreg", version="2")
    archived = ops.post(f"/v1/models/{other.pk}/promote", {"target": "archived", "reason": "superseded"}, format="json")
    assert archived.json()["status"] == "archived"


def test_promote_refuses_a_transition_the_lifecycle_does_not_allow(ops, production_model, push_demo):
    version = push_demo("gbdt")
    refused = ops.post(f"/v1/models/{version.pk}/promote", {"target": "production"}, format="json")
    assert refused.status_code == 409
    assert "only validated or canary versions can become production" in refused.json()["error"]["message"]
    bad = ops.post(f"/v1/models/{version.pk}/promote", {"target": "canary"}, format="json")
    assert list(bad.json()["error"]["fields"]) == ["target"]
    assert ops.post(f"/v1/models/{uuid.uuid4()}/promote", {"target": "validated"}, format="json").status_code == 404


def test_rollback_restores_the_previous_production_and_is_listed(ops, production_model, candidate, canary):
    ops.post(f"/v1/models/{candidate.pk}/promote", {"target": "production", "reason": "canary healthy"}, format="json")
    answer = ops.post(f"/v1/models/{PRODUCT}/rollback", {"reason": "fraud losses up"}, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["production"]["model_id"], body["rolled_back"]["model_id"]) == (str(production_model.pk), str(candidate.pk))
    assert ModelVersion.objects.get(pk=production_model.pk).status == "production"
    event = RollbackEvent.objects.get(pk=body["rollback_id"])
    assert event.message.endswith("[api_key:training-pipeline] fraud losses up")
    assert ops.get(f"/v1/rollbacks?product={PRODUCT}").json()["results"][0]["id"] == event.pk
    again = ops.post(f"/v1/models/{PRODUCT}/rollback", format="json")
    assert again.status_code == 409  # nothing earlier to go back to
    assert ops.post("/v1/models/no-such-product/rollback", format="json").status_code == 404
