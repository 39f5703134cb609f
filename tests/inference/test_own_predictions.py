"""Inference clients read back only their own predictions; auditors read any."""

import orjson
import pytest
from django.test import Client

from audit import writer
from audit.models import PredictionLog
from mlops import services as registry
from mlops.demo import PRODUCT
from mlops.security import authentication

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client_for(settings):
    settings.RATELIMIT_ENABLE = False

    def make(name: str, role: str) -> Client:
        _, key = registry.api_key_create(client=name, role=role)
        authentication.api_keys.invalidate()
        return Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    return make


def predict(client: Client, features: dict) -> str:
    body = orjson.dumps({"event_id": "evt-own", "product": PRODUCT, "features": features})
    response = client.post("/v1/infer", body, content_type="application/json")
    assert response.status_code == 200, response.content
    return orjson.loads(response.content)["prediction_id"]


@pytest.mark.parametrize("written", [False, True], ids=["still-in-the-writer", "in-the-database"])
def test_a_client_reads_its_own_prediction_but_not_another_clients(client_for, serving, events, written):
    alice, bob = client_for("alice", "inference_client"), client_for("bob", "inference_client")
    prediction_id = predict(alice, events[0])
    if written:
        assert writer.flush(10)
        assert PredictionLog.objects.get(pk=prediction_id).client == "client:alice"
    assert alice.get(f"/v1/infer/{prediction_id}").status_code == 200
    other = bob.get(f"/v1/infer/{prediction_id}")
    assert other.status_code == 404  # indistinguishable from an unknown id
    assert orjson.loads(other.content)["error"]["code"] == "not_found"


def test_an_auditor_reads_any_clients_prediction(client_for, serving, events):
    prediction_id = predict(client_for("alice", "inference_client"), events[0])
    writer.flush(10)
    response = client_for("audit-team", "auditor").get(f"/v1/infer/{prediction_id}")
    assert response.status_code == 200
    assert orjson.loads(response.content)["prediction_id"] == prediction_id
