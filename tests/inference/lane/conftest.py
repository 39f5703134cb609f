"""Both HTTP lanes of the hot endpoints side by side, in this process, on this test's database.

``lanes.drf(...)`` goes through Django's whole request cycle and the DRF views (the test client);
``lanes.hot(...)`` through the hot lane's handler (`inference.lane.endpoints.handle`), as its RSGI
application calls it: first as on the event loop, then on a thread if it would wait. Both answer a
`Reply`; ``lanes.both(...)`` asks each the same and returns both replies for comparison.
"""

from dataclasses import dataclass

import orjson
import pytest
from django.test import Client

from inference import cache
from inference.lane import endpoints, http
from mlops.background.reloading import WouldWait

# What the transport adds and may differ in (granian and Django's test client answer these apart).
TRANSPORT_HEADERS = {"date", "server", "content-length", "connection"}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names, without TRANSPORT_HEADERS
    body: bytes

    def json(self):
        return orjson.loads(self.body)


def _headers(items) -> dict[str, str]:
    return {name.lower(): value for name, value in items if name.lower() not in TRANSPORT_HEADERS}


class Lanes:
    def __init__(self):
        self._client = Client()

    def drf(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Reply:
        meta = {}
        for name, value in (headers or {}).items():
            key = name.upper().replace("-", "_")
            meta[key if key in {"CONTENT_LENGTH", "CONTENT_TYPE"} else f"HTTP_{key}"] = value
        meta.setdefault("CONTENT_TYPE", "application/json")
        response = self._client.generic(method, path, body, **meta)
        return Reply(response.status_code, _headers(response.headers.items()), response.content)

    def hot(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Reply:
        sent = {name.lower(): value for name, value in (headers or {}).items()}
        if body or method in {"POST", "PUT", "PATCH"}:
            sent.setdefault("content-length", str(len(body)))
        sent.setdefault("content-type", "application/json")
        request = http.Request(method=method, path=path, headers=sent, client_addr="127.0.0.1")
        endpoint, _ = endpoints.route(path)
        request.body = body[: endpoints.body_limit(endpoint) + 1] if endpoint is not None else b""
        try:
            answer = endpoints.handle(request, may_wait=False)
        except WouldWait:
            answer = endpoints.handle(request, may_wait=True)
        return Reply(answer.status, _headers(answer.headers), answer.body)

    def both(self, method: str, path: str, body=b"", headers: dict | None = None) -> tuple[Reply, Reply]:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        replies = []
        for lane in (self.drf, self.hot):
            cache.reset()  # each lane answers from the same state: the other's answer is not cached
            replies.append(lane(method, path, raw, headers))
        return replies[0], replies[1]


@pytest.fixture
def lanes() -> Lanes:
    http.reset()
    return Lanes()
