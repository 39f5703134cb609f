"""Production topology: predictions served by `web` (gunicorn) reach a live subscriber of `stream` (daphne) through Redis."""

import http.client
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mlops import services
from mlops.demo import PRODUCT
from tests.e2e.streams.servers import daphne, gunicorn
from tests.inference.streams.conftest import parse_sse

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("shared_redis"),  # the two processes meet through its channel layer
]


def test_a_prediction_answered_by_web_reaches_a_live_subscriber_of_stream(register, api_key, features):
    production = register("logreg")
    services.model_version_validate(model_version_id=production.pk, user=None, reason="test")
    services.model_version_promote(model_version_id=production.pk, user=None, reason="test")
    client = Client()
    client.force_login(get_user_model().objects.create_user("two-proc", password="pw", is_staff=True))
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    with gunicorn() as web, daphne() as stream_base:
        url = urlsplit(stream_base)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
        connection.request("GET", f"/stream/live/{PRODUCT}/", headers={"Cookie": cookie})
        response = connection.getresponse()
        assert response.status == 200
        events, subscribed, seen = [], threading.Event(), threading.Event()

        def read():
            pending = b""
            while not seen.is_set():
                chunk = response.read1(65536)
                if not chunk:
                    return
                found, pending = parse_sse(pending + chunk, time.monotonic())
                events.extend(found)
                if any(e["event"] == "hello" for e in found):  # sent once the stream has joined the product group
                    subscribed.set()
                if any(e["event"] == "prediction" and e["data"]["event_id"] == "two-proc-1" for e in events):
                    seen.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert subscribed.wait(10), "the live stream said hello"
        request = urllib.request.Request(
            web + "/v1/infer",
            data=orjson.dumps({"event_id": "two-proc-1", "product": PRODUCT, "features": features}),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        answered = time.monotonic()
        assert seen.wait(5), f"the stream process never saw it: {[e['event'] for e in events]}"
        arrival = next(e["at"] for e in events if e["event"] == "prediction")
        assert arrival - answered < 1.0
        connection.close()
