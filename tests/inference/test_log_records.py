"""What the serving path hands the prediction log is a `audit.records.PredictionRecord`: every
required field, nothing the log does not store, for answers, batch answers and shadows alike."""

import pytest

from audit import records, writer
from inference import services, shadow
from inference.runtime import runtime
from inference.validation import InferRequest
from mlops import services as registry
from mlops.demo import PRODUCT

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def submitted(monkeypatch) -> list[dict]:
    """The records handed to the log writer (they still go to it)."""
    seen = []
    submit = writer.submit

    def spy(record):
        seen.append(record)
        return submit(record)

    monkeypatch.setattr(writer, "submit", spy)
    return seen


def test_answers_batch_answers_and_shadows_are_logged_as_prediction_records(serving, validated, events, submitted):
    gbdt = validated("gbdt")
    registry.shadow_enable(product=PRODUCT, shadow_model_id=gbdt.pk, sample_percent=100, user=None, reason="test")
    runtime.refresh()
    services.predict(event_id="one", product=PRODUCT, features=events[0])
    services.predict_batch(items=[InferRequest(event_id=f"batch-{i}", product=PRODUCT, features=events[i + 1]) for i in range(3)])
    shadow.reset(wait=True)  # the shadow runs have logged their records

    assert sorted(record["role"] for record in submitted) == ["production"] * 4 + ["shadow"] * 4
    for record in submitted:
        assert records.REQUIRED <= record.keys() <= set(records.STORED), record["role"]
