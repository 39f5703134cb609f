"""/stream/live/<product>/ and /live/<product>/ in process: staff only, group feed, sampling, resume."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.test import Client

from audit.publish import group_name
from inference.streams.metrics import LIVE_SUBSCRIBERS
from mlops.demo import PRODUCT
from tests.inference.streams.conftest import parse_sse, scope_for

pytestmark = pytest.mark.django_db(transaction=True)


def staff_cookie() -> str:
    user = get_user_model().objects.create_user("live-staff", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def record(model_version_id: str, *, role: str = "production", decision: str = "allow", **extra) -> dict:
    return {
        "prediction_id": str(uuid.uuid4()),
        "event_id": f"e-{uuid.uuid4().hex[:8]}",
        "product": PRODUCT,
        "model_version_id": model_version_id,
        "role": role,
        "score": 0.1,
        "decision": decision,
        "latency_ms": 1.0,
        "cached": False,
        "fallback_reason": "",
        "primary_prediction_id": None,
        "score_diff": None,
        "diff_class": "",
        "decision_agrees": None,
        "created_at": datetime.now(UTC).isoformat(),
        **extra,
    }


class Subscriber:
    def __init__(self, headers: dict):
        from mlops.asgi import application

        self.communicator = ApplicationCommunicator(application, scope_for(f"/stream/live/{PRODUCT}/", "GET", headers))
        self.events: list[dict] = []
        self.raw = b""
        self._pending = b""

    async def open(self) -> dict:
        await self.communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await self.communicator.receive_output(5)
        return start

    async def read_until(self, predicate, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; got {[e['event'] for e in self.events]}"
            message = await self.communicator.receive_output(remaining)
            self.raw += message.get("body", b"")
            found, self._pending = parse_sse(self._pending + message.get("body", b""))
            self.events.extend(found)

    async def close(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(5)

    def named(self, name: str) -> list[dict]:
        return [event for event in self.events if event["event"] == name]


def test_anonymous_users_get_403_from_the_stream():
    async def run():
        subscriber = Subscriber({})
        start = await subscriber.open()
        assert start["status"] == 403
        await subscriber.communicator.wait(5)

    asyncio.run(run())


def test_anonymous_users_are_sent_to_the_login_page():
    response = Client().get(f"/live/{PRODUCT}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


def test_staff_see_the_page():
    client = Client()
    client.force_login(get_user_model().objects.create_user("page-staff", password="pw", is_staff=True))
    response = client.get(f"/live/{PRODUCT}/")
    assert response.status_code == 200
    assert f"/stream/live/{PRODUCT}/" in response.content.decode()


def test_staff_get_each_prediction_of_the_group_with_model_labels(production_model):
    cookie = staff_cookie()
    model_id = str(production_model.pk)

    async def run():
        subscriber = Subscriber({"cookie": cookie})
        start = await subscriber.open()
        assert start["status"] == 200
        assert dict(start["headers"])[b"content-type"].startswith(b"text/event-stream")
        await subscriber.read_until(lambda events: any(e["event"] == "hello" for e in events))
        assert LIVE_SUBSCRIBERS._value.get() >= 1
        primary = record(model_id, decision="block")
        shadow = record(model_id, role="shadow", primary_prediction_id=primary["prediction_id"], diff_class="significant", score_diff=0.5)
        await get_channel_layer().group_send(group_name(PRODUCT), {"type": "predictions.batch", "records": [primary, shadow]})
        await subscriber.read_until(lambda events: len([e for e in events if e["event"] == "prediction"]) == 2)
        first, second = subscriber.named("prediction")
        assert first["data"]["event_id"] == primary["event_id"] and first["data"]["model"] == "logreg@1"
        assert second["data"]["diff_class"] == "significant" and second["data"]["role"] == "shadow"
        assert first["id"].split(".")[0] == "1" and second["id"].split(".")[0] == "2"
        await subscriber.close()

    asyncio.run(run())


def test_above_the_rate_limit_the_stream_samples_and_says_how_many_it_skipped(production_model, settings):
    settings.LIVE_MAX_EVENTS_PER_SECOND = 20
    cookie = staff_cookie()
    model_id = str(production_model.pk)

    async def run():
        subscriber = Subscriber({"cookie": cookie})
        await subscriber.open()
        await subscriber.read_until(lambda events: any(e["event"] == "hello" for e in events))
        batch = [record(model_id) for _ in range(50)]
        await get_channel_layer().group_send(group_name(PRODUCT), {"type": "predictions.batch", "records": batch})
        await subscriber.read_until(lambda events: any(e["event"] == "sampled" for e in events), timeout=4)
        assert len(subscriber.named("prediction")) == 20
        sampled = subscriber.named("sampled")[0]["data"]
        assert sampled["skipped"] == 30 and sampled["max_events_per_second"] == 20
        await subscriber.close()

    asyncio.run(run())


def test_heartbeat_comments_keep_an_idle_stream_open(production_model, settings):
    settings.LIVE_HEARTBEAT_SECONDS = 1.0
    cookie = staff_cookie()

    async def run():
        subscriber = Subscriber({"cookie": cookie})
        await subscriber.open()
        await subscriber.read_until(lambda events: any(e["event"] == "hello" for e in events))
        deadline = time.monotonic() + 4
        while b": heartbeat" not in subscriber.raw:
            assert time.monotonic() < deadline, "no heartbeat"
            message = await subscriber.communicator.receive_output(3)
            subscriber.raw += message.get("body", b"")
        await subscriber.close()

    asyncio.run(run())


@pytest.mark.parametrize("ending", ["logout", "deactivated"])
def test_the_stream_ends_when_the_staff_session_does(production_model, settings, ending):
    settings.LIVE_SESSION_CHECK_SECONDS = 1.0
    # The ticker checks the session before it sends a heartbeat on the same tick, so with equal
    # intervals the first heartbeat says that one session check has passed.
    settings.LIVE_HEARTBEAT_SECONDS = 1.0
    cookie = staff_cookie()
    user = get_user_model().objects.get(username="live-staff")

    async def run():
        subscriber = Subscriber({"cookie": cookie})
        await subscriber.open()
        await subscriber.read_until(lambda events: any(e["event"] == "hello" for e in events))
        await subscriber.read_until(lambda events: b": heartbeat" in subscriber.raw)  # a check passed, still signed in
        assert not subscriber.named("signed_out")
        if ending == "logout":
            client = Client()
            client.cookies["sessionid"] = cookie.split("=", 1)[1]
            await database_sync_to_async(client.post)("/admin/logout/")
        else:
            await database_sync_to_async(get_user_model().objects.filter(pk=user.pk).update)(is_active=False)
        deadline = time.monotonic() + 5
        while True:  # read to the end of the response: the server finishes it
            message = await subscriber.communicator.receive_output(max(0.1, deadline - time.monotonic()))
            found, subscriber._pending = parse_sse(subscriber._pending + message.get("body", b""))
            subscriber.events.extend(found)
            if not message.get("more_body", False):
                break
        [ended] = subscriber.named("signed_out")
        assert "sign in again" in ended["data"]["note"]
        await subscriber.close()

    asyncio.run(run())


def test_a_reconnect_with_last_event_id_resumes_numbering_and_replays_what_was_missed(production_model):
    from audit.models import PredictionLog

    cookie = staff_cookie()
    before = datetime.now(UTC) - timedelta(seconds=1)
    missed = [f"missed-{index}" for index in range(3)]
    PredictionLog.objects.bulk_create(
        PredictionLog(
            prediction_id=uuid.uuid4(),
            event_id=event_id,
            product=PRODUCT,
            model_version=production_model,
            role="production",
            features={},
            score=0.1,
            decision="allow",
            threshold=0.5,
            latency_ms=1.0,
            created_at=before + timedelta(milliseconds=100 * (index + 1)),
        )
        for index, event_id in enumerate(missed)
    )
    last_id = f"41.{int(before.timestamp() * 1_000_000)}"

    async def run():
        subscriber = Subscriber({"cookie": cookie, "last-event-id": last_id})
        await subscriber.open()
        await subscriber.read_until(lambda events: any(e["event"] == "resumed" for e in events))
        hello = subscriber.named("hello")[0]["data"]
        assert hello["resumed_after"] == 41
        replayed = subscriber.named("prediction")
        assert [event["data"]["event_id"] for event in replayed] == missed
        assert [event["id"].split(".")[0] for event in replayed] == ["42", "43", "44"]
        assert subscriber.named("resumed")[0]["data"]["replayed"] == 3
        await subscriber.close()

    asyncio.run(run())
