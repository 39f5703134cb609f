"""Prediction log records and rows for the audit tests."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import PredictionLog
from audit.writer import PredictionLogWriter
from mlops.models import ModelVersion


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


def make_rows(model_version, count: int = 1, **overrides) -> list[PredictionLog]:
    """Rows inserted straight into the database (INSERT is allowed; only UPDATE/DELETE are refused)."""
    return PredictionLog.objects.bulk_create([PredictionLog(**make_record(model_version, **overrides)) for _ in range(count)])


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
