"""Logged production traffic to backtest on: real answers of the demo logistic regression, logged
through the serving path and its writer, with outcomes for some of the events."""

import math
from pathlib import Path

import pytest
from django.utils import timezone
from sklearn.datasets import load_breast_cancer

from audit import writer
from audit.models import Outcome, PredictionLog
from inference import services
from inference.validation import InferRequest
from mlops import services as registry
from mlops.demo import PRODUCT, demo_feature_names
from tests.audit.conftest import writer_factory  # noqa: F401 - writers with their own redaction
from tests.logged import record_outcomes

ROWS = 200
LABELLED = 150  # the first events get an outcome (the data set's own target: 0 is malignant, the "fraud")


@pytest.fixture(autouse=True)
def inference_state(inference_state):
    """A clean serving runtime for every test here."""


@pytest.fixture(scope="session")
def dataset():
    data = load_breast_cancer()
    names = demo_feature_names()
    events = [{name: float(value) for name, value in zip(names, row, strict=True)} for row in data.data[:ROWS]]
    return events, [bool(target == 0) for target in data.target[:ROWS]]


@pytest.fixture
def logged(serving, dataset) -> list[PredictionLog]:
    """``ROWS`` production answers of ``fraud_score`` in the log (batches of the serving path), outcomes for ``LABELLED``."""
    events, labels = dataset
    for start in range(0, ROWS, 100):
        services.predict_batch(
            items=[InferRequest(event_id=f"evt-{i}", product=PRODUCT, features=events[i]) for i in range(start, min(ROWS, start + 100))]
        )
    assert writer.flush(10)
    record_outcomes([Outcome(product=PRODUCT, event_id=f"evt-{i}", label=labels[i], observed_at=timezone.now()) for i in range(LABELLED)])
    rows = list(PredictionLog.objects.filter(product=PRODUCT, role="production"))
    assert len(rows) == ROWS
    return rows


@pytest.fixture
def push_copy(local_store, demo_model_files):
    """Register a demo model's very file again as a new candidate of ``fraud_score``, with a threshold of choice."""

    def push(version: str, *, name: str = "logreg", threshold: float | None = None):
        demo = demo_model_files[name]
        return registry.model_push(
            source=Path(demo.path), store=local_store, product=PRODUCT, name=name, version=version,
            threshold=demo.threshold if threshold is None else threshold,
        )  # fmt: skip

    return push


def batches(rows: int, size: int) -> int:
    return math.ceil(rows / size)
