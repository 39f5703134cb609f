"""``/stream/live/<product>/``: every logged prediction of a product as it happens, for staff.

Fed by the channel-layer group ``predictions.<product>`` that the prediction log writer
publishes to (`audit.publish`), sampled down to ``LIVE_MAX_EVENTS_PER_SECOND`` per subscriber,
with heartbeats and ``Last-Event-ID`` resume. The consumer returns from the request handler
after subscribing and sends from its channel-layer handlers and a ticker task, so it still
receives ``http.disconnect`` (channels #1249, #1302).
"""

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from importlib import import_module
from types import SimpleNamespace

import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.contrib.auth import get_user

from audit.publish import live_record
from audit.records import LIVE
from inference.streams.hub import hub, prepare
from inference.streams.metrics import (
    LIVE_EVENTS,
    LIVE_SUBSCRIBERS,
)
from inference.streams.sse import SCHEMA_VERSION, SSE_HEADERS, sse
from mlops.api.errors import error_body

REPLAY_CLOCK_SLACK = timedelta(hours=1)


def _parse_last_event_id(value: str) -> tuple[int, int] | None:
    """``"<seq>.<created_at in µs>"`` -> (seq, µs)."""
    seq, _, created = value.strip().partition(".")
    if seq.isdigit() and created.isdigit():
        return int(seq), int(created)
    return None


def _replay_rows(product: str, after_us: int, limit: int) -> list[dict]:
    from audit.models import PredictionLog

    after = datetime.fromtimestamp(after_us / 1_000_000, tz=UTC)
    # Bounded above as well, so PostgreSQL leaves out the partitions made ahead for the days to come
    # (with an hour's slack for a writer whose clock runs ahead); index (product, created_at).
    until = datetime.now(UTC) + REPLAY_CLOCK_SLACK
    rows = PredictionLog.objects.filter(product=product, created_at__gt=after, created_at__lt=until)
    rows = rows.order_by("created_at").values(*LIVE)[: limit + 1]
    return [live_record(row) for row in rows]


def _still_signed_in_staff(session_key: str | None, user_id) -> bool:
    """Whether the session that opened a live stream still signs in the same active staff member:
    a logout deletes the session, a password change invalidates it, an admin may deactivate the
    account or take staff status away."""
    if not session_key:
        return False
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=session))
    return _is_active_staff(user) and user.pk == user_id


def _is_active_staff(user) -> bool:
    return user is not None and user.is_authenticated and user.is_active and user.is_staff


class LiveConsumer(AsyncHttpConsumer):
    """``/stream/live/<product>/``: a staff member's live view of a product's predictions.

    The process subscribes to the product's group once (`inference.streams.hub`); this consumer
    reads its own in-process queue from a task, so it still receives ``http.disconnect``.
    """

    channel_layer_alias = "__no_channel_layer__"  # fed by the hub, not addressed by the layer

    async def http_request(self, message):
        if "body" in message:
            self.body.append(message["body"])
        if message.get("more_body"):
            return
        if not await self.start():
            await self.disconnect()
            raise StopConsumer()
        # Subscribed: return, so that group messages and http.disconnect are dispatched.

    async def start(self) -> bool:
        user = self.scope.get("user")
        self.subscribed = False
        if not _is_active_staff(user):
            body = error_body("not_authenticated", "Sign in to the admin as a staff member.")
            await self.send_response(403, orjson.dumps(body), headers=[(b"content-type", b"application/json")])
            return False
        if self.scope.get("method") != "GET":
            await self.send_response(405, b"", headers=[(b"allow", b"GET")])
            return False
        self.product = self.scope["url_route"]["kwargs"]["product"]
        self.user_id, self.session_key = user.pk, getattr(self.scope.get("session"), "session_key", None)
        self.limit = max(1, settings.LIVE_MAX_EVENTS_PER_SECOND)
        self.window_start, self.window_count, self.skipped, self.skipped_total = time.monotonic(), 0, 0, 0
        self.skipped_primaries: dict[str, None] = {}
        self.seen: dict[str, None] = {}
        headers = dict(self.scope.get("headers", []))
        resume = _parse_last_event_id(headers.get(b"last-event-id", b"").decode("latin-1"))
        self.seq = resume[0] if resume else 0
        await self.send_headers(status=200, headers=SSE_HEADERS)
        self.subscription = await hub.subscribe(self.product)
        self.subscribed = True
        LIVE_SUBSCRIBERS.inc()
        hello = {
            "v": SCHEMA_VERSION,
            "product": self.product,
            "max_events_per_second": self.limit,
            "heartbeat_seconds": settings.LIVE_HEARTBEAT_SECONDS,
            "resumed_after": self.seq if resume else None,
        }
        await self.send_body(b"retry: 2000\n" + sse("hello", hello), more_body=True)
        if resume:
            await self._replay(resume[1])
        self.ticker = asyncio.create_task(self._tick())
        self.reader = asyncio.create_task(self._read())
        return True

    async def _read(self) -> None:
        subscription = self.subscription
        while True:
            message = await subscription.queue.get()
            if subscription.dropped_records:  # this subscriber fell behind: whole batches were dropped for it
                self.skipped += subscription.dropped_records
                self.skipped_total += subscription.dropped_records
                LIVE_EVENTS.labels("skipped").inc(subscription.dropped_records)
                subscription.dropped_records = 0
            await self.predictions_batch(message)

    async def _replay(self, after_us: int) -> None:
        limit = max(0, settings.LIVE_REPLAY_MAX)
        rows = await database_sync_to_async(_replay_rows)(self.product, after_us, limit) if limit else []
        more = len(rows) > limit
        rows = rows[-limit:] if more else rows  # the most recent ones: the page shows the latest
        chunks = [self._prediction_event(item, count=False) for item in await prepare(rows)]
        note = "Predictions logged while you were away" + (f" (the last {limit}; more were missed)" if more else "")
        data = {"v": SCHEMA_VERSION, "replayed": len(rows), "more": more, "since_us": after_us, "note": note}
        await self.send_body(b"".join(chunks) + sse("resumed", data), more_body=True)

    def _prediction_event(self, item: tuple[dict, bytes, int], *, count: bool = True) -> bytes:
        record, payload, created = item
        prediction_id = record.get("prediction_id") or ""
        if prediction_id in self.seen:
            return b""
        self.seen[prediction_id] = None
        if len(self.seen) > 5_000:
            self.seen.pop(next(iter(self.seen)))
        if count and not self._admit(record):
            return b""
        self.seq += 1
        LIVE_EVENTS.labels("sent").inc()
        return b"id: %d.%d\nevent: prediction\ndata: %b\n\n" % (self.seq, created, payload)

    def _admit(self, record: dict) -> bool:
        """Sampling: at most ``limit`` events a second; a skipped answer's shadow is skipped too."""
        primary = record.get("primary_prediction_id")
        if record.get("role") == "shadow" and primary in self.skipped_primaries:
            self._skip(None)
            return False
        self._roll_window()
        if self.window_count >= self.limit:
            self._skip(record.get("prediction_id") if record.get("role") != "shadow" else None)
            return False
        self.window_count += 1
        return True

    def _skip(self, prediction_id: str | None) -> None:
        self.skipped += 1
        self.skipped_total += 1
        LIVE_EVENTS.labels("skipped").inc()
        if prediction_id:
            self.skipped_primaries[prediction_id] = None
            if len(self.skipped_primaries) > 5_000:
                self.skipped_primaries.pop(next(iter(self.skipped_primaries)))

    def _roll_window(self) -> bytes:
        """Start a new one-second window when due; the notice of what the last one skipped."""
        now = time.monotonic()
        if now - self.window_start < 1.0:
            return b""
        notice = b""
        if self.skipped:
            data = {
                "v": SCHEMA_VERSION,
                "skipped": self.skipped,
                "skipped_total": self.skipped_total,
                "window_seconds": round(now - self.window_start, 3),
                "max_events_per_second": self.limit,
            }
            notice = sse("sampled", data)
        self.window_start, self.window_count, self.skipped = now, 0, 0
        return notice

    async def predictions_batch(self, message):
        """A batch written by the prediction log writer (`audit.publish`), prepared by the hub."""
        chunks = []
        for item in message.get("prepared") or []:
            notice = self._roll_window()
            if notice:
                chunks.append(notice)
            chunks.append(self._prediction_event(item))
        body = b"".join(chunks)
        if body:
            await self.send_body(body, more_body=True)

    async def _tick(self) -> None:
        last_sent = last_check = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            if time.monotonic() - last_check >= settings.LIVE_SESSION_CHECK_SECONDS:
                last_check = time.monotonic()
                if not await database_sync_to_async(_still_signed_in_staff)(self.session_key, self.user_id):
                    # The last event; finishing the response makes the server send http.disconnect,
                    # which unsubscribes. EventSource does not reconnect after the page closes it.
                    data = {"v": SCHEMA_VERSION, "note": "Your admin session has ended: sign in again to watch."}
                    await self.send_body(sse("signed_out", data), more_body=False)
                    return
            notice = self._roll_window()
            if notice:
                await self.send_body(notice, more_body=True)
                last_sent = time.monotonic()
            if time.monotonic() - last_sent >= settings.LIVE_HEARTBEAT_SECONDS:
                await self.send_body(b": heartbeat\n\n", more_body=True)
                last_sent = time.monotonic()

    async def disconnect(self):
        for name in ("reader", "ticker"):
            task = getattr(self, name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if getattr(self, "subscribed", False):
            self.subscribed = False
            LIVE_SUBSCRIBERS.dec()
            with contextlib.suppress(Exception):
                await hub.unsubscribe(self.subscription)
