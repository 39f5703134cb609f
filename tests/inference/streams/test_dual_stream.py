"""POST /stream/v1/infer in process: ordering, timeouts, failures, disconnects, idempotency, bad input."""

import asyncio
import io
import json
import logging
import time

import pytest

from audit.models import DualRunRecord
from inference.streams.recorder import recorder
from mlops.observability.logging import ContextFilter, JsonFormatter
from tests.inference.streams.conftest import bearer, body, run_threads, stream

pytestmark = pytest.mark.django_db(transaction=True)


def record_of(run_id: str) -> DualRunRecord:
    assert recorder.flush(10)
    return DualRunRecord.objects.get(run_id=run_id)


def test_preliminary_then_final_then_done(dual, api_key, features):
    dual("logreg", "gbdt")
    result = stream(body(features), bearer(api_key))
    assert result.status == 200
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.names == ["preliminary", "final", "done"]
    preliminary, final, done = result.events
    run_id = result.headers["x-run-id"]
    assert [event["id"] for event in result.events] == [f"{run_id}:1", f"{run_id}:2", f"{run_id}:3"]
    assert preliminary["data"]["v"] == 1 and preliminary["data"]["model"] == "fast" and preliminary["data"]["model_name"] == "logreg"
    assert final["data"]["model"] == "full" and final["data"]["model_name"] == "gbdt"
    for event in (preliminary, final):
        assert 0.0 <= event["data"]["score"] <= 1.0
        assert event["data"]["decision"] in {"allow", "review", "block"}
        assert event["data"]["latency_ms"] > 0
    assert done["data"]["succeeded"] == ["preliminary", "final"]
    assert done["data"]["preliminary"] == "ok" and done["data"]["final"] == "ok"
    record = record_of(run_id)
    assert record.fast_output["score"] == preliminary["data"]["score"]
    assert record.full_output["score"] == final["data"]["score"]
    assert record.errors == [] and not record.disconnected
    assert record.fast_latency_ms > 0 and record.full_latency_ms > 0
    assert record.events[-1]["event"] == "done"
    assert run_threads() == [] and result.tasks_left == []


def test_fast_times_out_and_full_answers(dual, api_key, features):
    dual("slow", "gbdt", fast_ms=200, full_ms=5_000)
    started = time.monotonic()
    result = stream(body(features), bearer(api_key))
    elapsed = time.monotonic() - started
    assert result.names == ["error", "final", "done"]  # the fast part first, always
    error = result.one("error")["data"]
    assert error["model"] == "fast" and error["code"] == "timeout" and error["model_name"] == "slow"
    assert result.one("done")["data"]["succeeded"] == ["final"]
    assert elapsed < 1.0, "the slow run was cancelled at its timeout, not run to its end"
    record = record_of(result.headers["x-run-id"])
    assert record.fast_output is None and record.full_output is not None
    assert record.errors[0]["code"] == "timeout"
    assert run_threads() == []


def test_full_times_out_and_fast_answers(dual, api_key, features):
    dual("logreg", "slow", fast_ms=1_000, full_ms=300)
    started = time.monotonic()
    result = stream(body(features), bearer(api_key))
    assert time.monotonic() - started < 1.0
    assert result.names == ["preliminary", "error", "done"]
    assert result.one("error")["data"]["model"] == "full"
    assert result.one("error")["data"]["code"] == "timeout"
    assert result.one("done")["data"] | {"total_latency_ms": 0} == result.one("done")["data"] | {
        "succeeded": ["preliminary"],
        "preliminary": "ok",
        "final": "timeout",
        "total_latency_ms": 0,
    }
    record = record_of(result.headers["x-run-id"])
    assert record.fast_output is not None and record.full_output is None
    assert run_threads() == []


def test_both_time_out_and_the_stream_still_ends_with_done(dual, api_key, features):
    dual("slow", "slower", fast_ms=150, full_ms=250)
    started = time.monotonic()
    result = stream(body(features), bearer(api_key))
    assert time.monotonic() - started < 1.0
    assert result.names == ["error", "error", "done"]
    assert [event["data"]["model"] for event in result.events[:2]] == ["fast", "full"]
    assert {event["data"]["code"] for event in result.events[:2]} == {"timeout"}
    assert result.one("done")["data"]["succeeded"] == []
    record = record_of(result.headers["x-run-id"])
    assert record.fast_output is None and record.full_output is None
    assert sorted(error["model"] for error in record.errors) == ["fast", "full"]
    assert run_threads() == []


def test_a_failing_model_is_a_model_error_and_the_other_still_answers(dual, api_key, features):
    dual("logreg", "failing")
    result = stream(body(features), bearer(api_key))
    assert result.names == ["preliminary", "error", "done"]
    error = result.one("error")["data"]
    assert error["code"] == "model_error" and error["model"] == "full"
    assert "Traceback" not in error["message"] and "ONNXRuntimeError" not in error["message"]
    record = record_of(result.headers["x-run-id"])
    assert record.errors == [{"model": "full", "code": "model_error", "message": error["message"]}]


def test_a_disconnect_cancels_the_runs_still_going(dual, api_key, features):
    dual("logreg", "slower", fast_ms=1_000, full_ms=10_000)
    started = time.monotonic()
    result = stream(body(features, run_id="leaves-early"), bearer(api_key), disconnect_after="preliminary")
    assert time.monotonic() - started < 1.0, "the full run was cancelled, not waited for"
    assert result.names == ["preliminary"]
    assert run_threads() == [], "no run thread outlives its stream"
    assert result.tasks_left == [], "nor any of its tasks"
    record = record_of("leaves-early")
    assert record.disconnected
    assert record.full_output is None
    assert {"model": "full", "code": "cancelled", "message": "the client disconnected"} in record.errors


def test_a_recorded_run_id_is_replayed_not_run_again(dual, api_key, features):
    dual("logreg", "gbdt")
    first = stream(body(features, run_id="run-42"), bearer(api_key))
    assert first.headers["x-run-id"] == "run-42"
    record_of("run-42")
    recorder.memory.reset()  # as another process would: only the database knows the run
    again = stream(body(features, run_id="run-42"), bearer(api_key))
    assert again.names == first.names
    assert [event["id"] for event in again.events] == [event["id"] for event in first.events]
    assert [event["data"] for event in again.events[:-1]] == [event["data"] for event in first.events[:-1]]
    assert again.one("done")["data"]["replayed"] is True
    assert DualRunRecord.objects.filter(run_id="run-42").count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"event_id": "e", "product": "fraud_score"}', "features"),
        (b'{"event_id": "e", "product": "fraud_score", "features": {"mean_radius": "x"}}', "features.mean_radius"),
        (b'{"event_id": "e", "product": "nope", "features": {}}', "product"),
        (b'{"event_id": "e", "product": "fraud_score", "features": {}, "run_id": "bad id!"}', "run_id"),
        (b"{not json", "body"),
    ],
)
def test_bad_input_is_a_json_400_naming_the_field(dual, api_key, payload, field):
    dual("logreg", "gbdt")
    result = stream(payload, bearer(api_key))
    assert result.status == 400
    assert result.headers["content-type"].startswith("application/json")
    assert field in result.json["error"]["fields"]


def test_no_credentials_is_a_json_401(dual, features):
    dual("logreg", "gbdt")
    result = stream(body(features), {})
    assert result.status == 401
    assert result.json["error"]["code"] in {"not_authenticated", "authentication_failed"}


def test_only_post_is_a_stream(dual):
    dual("logreg", "gbdt")
    status, _ = asyncio.run(get("/stream/v1/infer"))
    assert status == 405


def test_an_unknown_stream_is_a_json_404():
    status, body_bytes = asyncio.run(get("/stream/nope/"))
    assert status == 404 and b"not_found" in body_bytes


async def get(path: str) -> tuple[int, bytes]:
    from asgiref.testing import ApplicationCommunicator

    from mlops.asgi import application
    from tests.inference.streams.conftest import scope_for

    communicator = ApplicationCommunicator(application, scope_for(path, "GET"))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(5)
    body_message = await communicator.receive_output(5)
    await communicator.wait(5)
    return start["status"], body_message.get("body", b"")


def test_a_full_model_faster_than_the_fast_one_still_comes_after_preliminary(dual, api_key, features):
    dual("slow", "logreg", fast_ms=5_000, full_ms=5_000)
    result = stream(body(features), bearer(api_key))
    assert result.names == ["preliminary", "final", "done"]
    assert result.one("final")["data"]["latency_ms"] < result.one("preliminary")["data"]["latency_ms"]


def test_the_api_rate_limit_applies_to_streams_too(dual, api_key, features, settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_PREDICT = "2/m"
    settings.RATELIMIT_PREDICT_BURST = ""
    dual("logreg", "gbdt")
    first = stream(body(features, event_id="r-1"), bearer(api_key))
    assert first.status == 200 and first.headers["x-ratelimit-limit"] == "2"
    stream(body(features, event_id="r-2"), bearer(api_key))
    refused = stream(body(features, event_id="r-3"), bearer(api_key))
    assert refused.status == 429 and refused.json["error"]["code"]


def test_the_lines_a_stream_logs_carry_its_run_id(dual, api_key, features):
    """Seed 002: stream log lines carry ``run_id`` as a field, the failing run's thread included."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(ContextFilter())
    logging.getLogger("inference.streams").addHandler(handler)
    try:
        dual("logreg", "failing")
        result = stream(body(features, run_id="logged-run-7"), bearer(api_key))
    finally:
        logging.getLogger("inference.streams").removeHandler(handler)
    assert result.names == ["preliminary", "error", "done"]
    [failed] = [json.loads(line) for line in lines.getvalue().splitlines() if "failed" in line]
    assert failed["run_id"] == "logged-run-7" and failed["message"].startswith("dual-model run of")
