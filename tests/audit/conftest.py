"""Prediction log records and rows for the audit tests."""

import os
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from audit.models import PredictionLog
from audit.writer import PredictionLogWriter
from mlops.models import ModelVersion
from tests.logged import log_rows


def make_version(name: str = "logreg", version: str = "1", *, product: str = "fraud_score", status: str = "candidate", threshold=0.5):
    """A model version row (the audit tests need the row, not the artifact)."""
    return ModelVersion.objects.create(
        product=product,
        name=name,
        version=version,
        artifact_uri=f"file:///models/{product}/{name}/{version}/model.onnx",
        sha256="0" * 64,
        input_schema={"features": [{"name": "amount", "type": "float"}]},
        threshold=threshold,
        status=status,
    )


@pytest.fixture
def production_version(db):
    return make_version("logreg", "1", status="production")


@pytest.fixture
def canary_version(db):
    return make_version("gbdt", "1", status="canary", threshold=0.6)


def make_record(model_version, **overrides) -> dict:
    """A record as `inference` hands it to the writer."""
    record = {
        "prediction_id": uuid.uuid4(),
        "request_id": uuid.uuid4().hex,
        "event_id": f"evt-{uuid.uuid4().hex[:12]}",
        "product": model_version.product,
        "model_version_id": model_version.pk,
        "role": "production",
        "features": {"amount": 12.5, "email": "alice@example.com", "country": "NL"},
        "score": 0.25,
        "decision": "allow",
        "threshold": model_version.threshold,
        "explain_summary": [{"feature": "amount", "contribution": 0.1}],
        "latency_ms": 1.5,
        "cached": False,
        "created_at": timezone.now(),
    }
    record.update(overrides)
    return record


def uuid7_at(moment) -> uuid.UUID:
    """A time-ordered prediction id as `inference.ids` makes them, for a given moment."""
    ms = int(moment.timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    return uuid.UUID(int=ms << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64 | 0b10 << 62 | rand & (1 << 62) - 1)


def make_rows(model_version, count: int = 1, **overrides) -> list[PredictionLog]:
    """Rows inserted through the log store, as the writer inserts them (rollups included)."""
    return log_rows([PredictionLog(**make_record(model_version, **overrides)) for _ in range(count)])


@pytest.fixture
def writer_factory(tmp_path):
    """Writers with a private spill folder and no signal handlers or live publishing."""
    made: list[PredictionLogWriter] = []

    def build(**options) -> PredictionLogWriter:
        options.setdefault("spill_dir", tmp_path / "spill")
        options.setdefault("interval", 0.05)
        options.setdefault("retry_interval", 0.2)
        options.setdefault("replay_interval", 0.2)
        writer = PredictionLogWriter(**options)
        writer.install_signal_handlers = False
        made.append(writer)
        return writer

    yield build
    for writer in made:
        writer.close(5)


@pytest.fixture
def an_hour_ago():
    return timezone.now() - timedelta(hours=1)


def staff(username: str, *codenames: str) -> User:
    """A staff account holding the named audit permissions."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="audit", codename__in=codenames))
    return user


@pytest.fixture
def auditor_client(client):
    """The test client signed in as an auditor (views the log and outcomes)."""
    client.force_login(staff("auditor", "view_predictionlog", "view_outcome"))
    return client
