"""Micro-batching in the hot lane: single predictions whose bodies arrive together are scored in one
session call, and each is still answered as it is alone (`inference.lane.app`, `inference.microbatch`).

The RSGI application itself is driven on an event loop, as granian drives it: the requests' bodies
all arrive in the same turn of the loop, so they are gathered without any waiting.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import orjson
import pytest
from prometheus_client import REGISTRY

from inference import cache, microbatch
from inference.lane.app import Lane
from inference.runtime import runtime
from mlops import services as registry
from mlops.demo import PRODUCT
from tests.mlops.security.conftest import create_key

pytestmark = pytest.mark.django_db(transaction=True)


class _Protocol:
    """What granian hands the application for one request: the body, and where the answer goes."""

    def __init__(self, body: bytes):
        self.body = body
        self.status: int | None = None
        self.answer: dict = {}

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status: int, headers, body: bytes) -> None:
        self.status, self.answer = status, orjson.loads(body)


def _scope(key: str, body: bytes) -> SimpleNamespace:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json", "content-length": str(len(body))}
    return SimpleNamespace(proto="http", method="POST", path="/v1/infer", headers=headers, client="127.0.0.1:40000", scheme="http")


def _answer(lane: Lane, requests: list[tuple[str, bytes]]) -> list[_Protocol]:
    """The requests sent at once; their answers, in order."""
    protocols = [_Protocol(body) for _, body in requests]

    async def send():
        sending = zip(requests, protocols, strict=True)
        await asyncio.gather(*(lane.__rsgi__(_scope(key, body), protocol) for (key, body), protocol in sending))

    asyncio.run(send())
    return protocols


def _batch_rows(model) -> tuple[float, float]:
    labels = {"product": model.spec.product, "model": model.label}
    count = REGISTRY.get_sample_value("mlops_inference_batch_rows_count", labels) or 0.0
    return count, REGISTRY.get_sample_value("mlops_inference_batch_rows_sum", labels) or 0.0


@pytest.fixture
def lane():
    lane = Lane()
    lane._threads = ThreadPoolExecutor(max_workers=2)  # what __rsgi_init__ makes: for what would wait
    yield lane
    lane._threads.shutdown(wait=True)


def test_predictions_arriving_together_are_scored_in_one_call_and_answered_as_alone(lane, validated, events, settings):
    settings.INFERENCE_MICROBATCH_MODELS = ["*"]
    settings.INFERENCE_MICROBATCH_MIN_RUN_US = 0
    settings.INFERENCE_MICROBATCH_MAX_WAIT_US = 0
    registry.model_version_promote(model_version_id=validated("gbdt").pk, user=None, reason="test")
    runtime.refresh()
    model = runtime.peek().routes[PRODUCT].production
    key = create_key("internal_service", client="together")  # exempt from the rate limits
    bodies = [orjson.dumps({"event_id": f"e{i}", "product": PRODUCT, "features": f}) for i, f in enumerate(events[:6])]
    _answer(lane, [(key, orjson.dumps({"event_id": "warm", "product": PRODUCT, "features": events[50]}))])  # loads the key
    calls, rows = _batch_rows(model)

    together = _answer(lane, [(key, body) for body in bodies] + [("not-a-key", bodies[0])])

    assert _batch_rows(model) == (calls + 1, rows + 6)  # the refused caller's row was not run
    assert [protocol.status for protocol in together] == [200] * 6 + [401]
    settings.INFERENCE_MICROBATCH_MODELS = []
    microbatch.reset()
    cache.reset()
    alone = [_answer(lane, [(key, body)])[0] for body in bodies]
    fields = ("score", "decision", "explain_summary", "model_id", "model_role", "cached")
    answers = [protocol.answer for protocol in together[:6]]
    assert [{f: answer[f] for f in fields} for answer in answers] == [{f: p.answer[f] for f in fields} for p in alone]
    assert all(answer["explain_summary"] and answer["cached"] is False for answer in answers)
    assert len({answer["prediction_id"] for answer in answers}) == 6


def test_predictions_gathered_into_a_batch_that_times_out_fail_on_time_as_alone(lane, push_misbehaving, events, settings):
    settings.INFERENCE_MICROBATCH_MODELS = ["*"]
    settings.INFERENCE_MICROBATCH_MIN_RUN_US = 0
    settings.INFERENCE_MICROBATCH_MAX_WAIT_US = 0
    settings.INFERENCE_MODEL_TIMEOUTS_MS = {f"{PRODUCT}/slow": 100}
    registry.model_version_promote(model_version_id=push_misbehaving("slow").pk, user=None, reason="test")
    runtime.refresh()
    key = create_key("internal_service", client="together")
    slowest = sorted(events, key=lambda f: f["mean_radius"])[-6:]  # about a second each, uncancelled
    bodies = [orjson.dumps({"event_id": f"s{i}", "product": PRODUCT, "features": f}) for i, f in enumerate(slowest)]
    alone = _answer(lane, [(key, bodies[0])])[0]  # also loads the key

    started = time.perf_counter()
    together = _answer(lane, [(key, body) for body in bodies])
    elapsed = time.perf_counter() - started

    assert [(p.status, p.answer) for p in together] == [(alone.status, alone.answer)] * 6
    assert alone.status == 503
    # One cancelled batch, not a cancelled batch and then six cancelled runs one after another on the loop.
    assert elapsed < 0.5
