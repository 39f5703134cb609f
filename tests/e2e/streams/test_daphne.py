"""Over real TCP from a running daphne: SSE events arrive as they happen, not at the end."""

import http.client
import time
from urllib.parse import urlsplit

import pytest

from audit.models import DualRunRecord
from tests.e2e.streams.servers import daphne
from tests.inference.streams.conftest import body, parse_sse

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def post_stream(base: str, payload: bytes, key: str) -> tuple[int, dict, list[dict]]:
    """POST and read the response as it arrives; each event carries its arrival time (monotonic)."""
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    connection.request(
        "POST", "/stream/v1/infer", body=payload, headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    )
    response = connection.getresponse()
    events, pending = [], b""
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        found, pending = parse_sse(pending + chunk, time.monotonic())
        events.extend(found)
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, events


def test_preliminary_arrives_well_before_final_when_the_full_model_is_slow(dual, api_key, features):
    dual("logreg", "slow", fast_ms=1_000, full_ms=10_000)
    with daphne() as base:
        sent = time.monotonic()
        status, headers, events = post_stream(base, body(features), api_key)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert [event["event"] for event in events] == ["preliminary", "final", "done"]
    preliminary, final, _done = events
    assert preliminary["at"] - sent < 0.5, "the fast answer is delivered as soon as it is ready"
    assert final["at"] - preliminary["at"] > 0.5, "…and not held back until the slow full model answers"
    assert final["data"]["latency_ms"] > 500
    deadline = time.monotonic() + 10
    while not DualRunRecord.objects.filter(run_id=headers["x-run-id"]).exists():  # written by the server, off the event path
        assert time.monotonic() < deadline, "the server recorded the run"
        time.sleep(0.05)
