"""Fixtures of the stream tests: dual-model configurations with really slow or failing models,
API keys, and a driver for the ASGI application in process.

The background refresher is off: each test sets up exactly what it serves. Tests that stream
use ``transaction=True``: the consumer reads credentials and configuration, and the recorder
writes DualRunRecords, through connections of other threads.
"""

import asyncio
import threading
from dataclasses import dataclass, field

import orjson
import pytest
from asgiref.testing import ApplicationCommunicator
from sklearn.datasets import load_breast_cancer

from audit import writer
from inference import cache, shadow
from inference.runtime import runtime
from inference.streams.dual_models import THREAD_PREFIX, dual_models
from inference.streams.recorder import recorder
from mlops import services
from mlops.demo import PRODUCT, demo_feature_names
from mlops.security.authentication import api_keys
from tests.onnx_models import build_failing_model, build_slow_model

SLOW_PER_UNIT = 60_000  # x the event's first feature (14.0 below): about 1-1.5 s on our machines


@pytest.fixture(scope="session", autouse=True)
def close_pooled_connections(django_db_setup):
    """Return the pool's connections (held by the log writer's and the consumers' threads) before the test database is dropped."""
    yield
    from django.db import connections

    for connection in connections.all():
        if hasattr(connection, "close_pool"):
            connection.close_pool()


@pytest.fixture(autouse=True)
def stream_state(settings):
    settings.INFERENCE_BACKGROUND_REFRESH = False
    settings.RATELIMIT_ENABLE = False
    settings.API_AUTH_DEV_BYPASS = False
    runtime.reset()
    cache.reset()
    dual_models.reset()
    recorder.memory.reset()
    api_keys.invalidate()
    yield
    recorder.flush(10)
    shadow.reset(wait=True)
    writer.flush(10)
    runtime.reset()
    dual_models.reset()
    recorder.memory.reset()
    api_keys.invalidate()


@pytest.fixture(scope="session")
def model_files(tmp_path_factory, demo_model_files) -> dict:
    folder = tmp_path_factory.mktemp("stream-models")
    return {
        "logreg": demo_model_files["logreg"].path,
        "gbdt": demo_model_files["gbdt"].path,
        "slow": build_slow_model(folder / "slow.onnx", SLOW_PER_UNIT),
        "slower": build_slow_model(folder / "slower.onnx", SLOW_PER_UNIT * 2),
        "failing": build_failing_model(folder / "failing.onnx"),
    }


@pytest.fixture
def register(local_store, model_files):
    """Register one of ``model_files`` for ``fraud_score``: ``register("slow")``."""

    def push(name: str):
        return services.model_push(source=model_files[name], store=local_store, product=PRODUCT, name=name, version="1")

    return push


@pytest.fixture
def dual(register):
    """``dual("logreg", "slow", fast_ms=..., full_ms=...)``: the product's dual-model configuration."""

    def configure(fast: str = "logreg", full: str = "gbdt", *, fast_ms: int = 1_000, full_ms: int = 5_000):
        fast_model, full_model = register(fast), register(full)
        return services.dual_model_set(
            product=PRODUCT,
            fast_model_id=fast_model.pk,
            full_model_id=full_model.pk,
            fast_timeout_ms=fast_ms,
            full_timeout_ms=full_ms,
            user=None,
            reason="test",
        )

    return configure


@pytest.fixture
def api_key() -> str:
    _, plaintext = services.api_key_create(client="stream-tests", role="inference_client")
    api_keys.invalidate()
    return plaintext


@pytest.fixture(scope="session")
def features() -> dict:
    """A real event of the demo data set, its first feature set to 14.0 (the slow model's clock)."""
    row = load_breast_cancer().data[0]
    values = {name: float(value) for name, value in zip(demo_feature_names(), row, strict=True)}
    values["mean_radius"] = 14.0
    return values


def body(features: dict, event_id: str = "evt-1", **extra) -> bytes:
    return orjson.dumps({"event_id": event_id, "product": PRODUCT, "features": features, **extra})


@dataclass
class Streamed:
    status: int
    headers: dict
    events: list[dict] = field(default_factory=list)  # {"id", "event", "data", "at"}
    raw: bytes = b""
    json: dict | None = None
    tasks_left: list[str] = field(default_factory=list)  # the stream's asyncio tasks still alive after it ended

    @property
    def names(self) -> list[str]:
        return [event["event"] for event in self.events]

    def one(self, name: str) -> dict:
        found = [event for event in self.events if event["event"] == name]
        assert len(found) == 1, f"{name}: {self.names}"
        return found[0]


def parse_sse(raw: bytes, at: float | None = None) -> tuple[list[dict], bytes]:
    """Complete events in ``raw`` and what is left over."""
    events = []
    while b"\n\n" in raw:
        block, raw = raw.split(b"\n\n", 1)
        event = {"id": None, "event": "message", "data": None, "at": at}
        data_lines = []
        for line in block.decode().split("\n"):
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data_lines.append(value)
            elif name in ("id", "event"):
                event[name] = value
        if data_lines:
            event["data"] = orjson.loads("\n".join(data_lines))
            events.append(event)
    return events, raw


def scope_for(path: str, method: str = "POST", headers: dict | None = None) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


async def drive(payload: bytes, headers: dict, *, disconnect_after: str | None = None, timeout: float = 20.0) -> Streamed:
    """POST ``payload`` to /stream/v1/infer through the ASGI application, in process.

    ``disconnect_after``: send ``http.disconnect`` as soon as that event arrived, then wait for
    the application to end.
    """
    from mlops.asgi import application

    loop = asyncio.get_running_loop()
    communicator = ApplicationCommunicator(
        application, scope_for("/stream/v1/infer", headers={"content-type": "application/json", **headers})
    )
    await communicator.send_input({"type": "http.request", "body": payload, "more_body": False})
    start = await communicator.receive_output(timeout)
    assert start["type"] == "http.response.start"
    result = Streamed(status=start["status"], headers={k.decode().lower(): v.decode() for k, v in start["headers"]})
    pending = b""
    while True:
        message = await communicator.receive_output(timeout)
        chunk = message.get("body", b"")
        result.raw += chunk
        events, pending = parse_sse(pending + chunk, loop.time())
        result.events.extend(events)
        if disconnect_after and any(event["event"] == disconnect_after for event in events):
            await communicator.send_input({"type": "http.disconnect"})
            await communicator.wait(timeout)
            break
        if not message.get("more_body"):
            await communicator.wait(timeout)
            break
    await asyncio.sleep(0)
    current = asyncio.current_task()
    result.tasks_left = [task.get_name() for task in asyncio.all_tasks() if task is not current and task.get_name().startswith("dual-")]
    if result.headers.get("content-type", "").startswith("application/json"):
        result.json = orjson.loads(result.raw)
    return result


def stream(payload: bytes, headers: dict, **kwargs) -> Streamed:
    return asyncio.run(drive(payload, headers, **kwargs))


def run_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith(THREAD_PREFIX)]


def bearer(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}
