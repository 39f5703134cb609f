"""What the serving path's log lines carry: an operator finds a prediction's lines by its ids."""

import io
import json
import logging

import pytest

from inference import services
from inference.runtime import runtime
from inference.validation import InferRequest
from mlops import services as registry
from mlops.demo import PRODUCT
from mlops.observability.logging import ContextFilter, JsonFormatter

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def json_lines():
    """The JSON lines the ``inference`` loggers write, as production's handler formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("inference")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_a_canary_fallback_warning_names_the_prediction_event_and_failing_model(serving, push_misbehaving, events, json_lines):
    failing = push_misbehaving("failing")
    registry.canary_set(product=PRODUCT, canary_model_id=failing.pk, canary_percent=100, user=None, reason="test")
    runtime.refresh()
    prediction = services.predict(event_id="evt-fallback", product=PRODUCT, features=events[0], request_id="req-9")
    [line] = [line for line in json_lines() if "fell back" in line["message"]]
    assert line["level"] == "WARNING" and line["timestamp"]
    assert {key: line[key] for key in ("request_id", "prediction_id", "event_id", "product", "model", "role")} == {
        "request_id": "req-9",
        "prediction_id": str(prediction.prediction_id),  # the id the client got back
        "event_id": "evt-fallback",
        "product": PRODUCT,
        "model": "failing@1",
        "role": "canary",
    }


def test_answered_lines_are_off_by_default_and_carry_the_answer_when_on(serving, events, json_lines):
    answers = logging.getLogger("inference.answers")
    services.predict(event_id="quiet", product=PRODUCT, features=events[0])
    assert not [line for line in json_lines() if line["message"] == "answered"]

    level = answers.level
    answers.setLevel(logging.INFO)  # what LOG_PREDICTIONS=true configures
    try:
        prediction = services.predict(event_id="loud", product=PRODUCT, features=events[1])
        [batch_answer] = services.predict_batch(items=[InferRequest(event_id="loud-batch", product=PRODUCT, features=events[2])])
    finally:
        answers.setLevel(level)
    single, batched = [line for line in json_lines() if line["message"] == "answered"]
    assert single["prediction_id"] == str(prediction.prediction_id) and single["event_id"] == "loud"
    assert (single["model"], single["role"], single["decision"]) == (prediction.model.label, "production", prediction.decision)
    assert single["latency_ms"] == prediction.latency_ms
    assert batched["prediction_id"] == str(batch_answer.prediction_id) and batched["event_id"] == "loud-batch"
