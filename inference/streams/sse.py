"""Server-Sent-Event framing shared by the stream consumers: the schema version, headers, one event."""

import orjson

SCHEMA_VERSION = 1
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
]


def sse(event: str, data: dict, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\nevent: {event}\n" if event_id is not None else f"event: {event}\n"
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"
