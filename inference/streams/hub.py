"""One channel-layer subscription per product and process, fanned out to the live subscribers.

Measured (bench/live_subscribers.py): when each live stream joined the group
``predictions.<product>`` itself, every published batch became one channel-layer message per
subscriber, and with Redis one round trip each to receive it; at 100 predictions/s one
daphne process fell behind between 200 and 300 subscribers (lag p50 of 35 s at 300). Here the
process joins the group once per product; each batch is received once and handed to every
local subscriber through an in-process queue, so Redis traffic no longer grows with the
number of browsers.

A subscriber's queue is bounded: a subscriber that cannot keep up loses whole batches (counted
and reported to it as skipped), it never slows the others.
"""

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

import orjson
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from audit.publish import group_name

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
QUEUE_BATCHES = 64  # batches waiting for one subscriber before its oldest are dropped
REJOIN_SECONDS = 600.0  # re-join the group well within channels_redis' group expiry (one day)


_model_labels: dict[str, str] = {}


def _load_labels(ids: list[str]) -> dict[str, str]:
    from mlops.models import ModelVersion

    rows = ModelVersion.objects.filter(pk__in=ids).values_list("pk", "name", "version")
    return {str(pk): f"{name}@{version}" for pk, name, version in rows}


def created_us(value) -> int:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return 0
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1_000_000)
    return 0


async def prepare(records: list[dict]) -> list[tuple[dict, bytes, int]]:
    """``(record, encoded event data, created_at in µs)`` per record, with the model's label.

    Done once per batch and process, not once per subscriber: a subscriber only adds its own
    ``id:`` line to the shared bytes.
    """
    missing = {r["model_version_id"] for r in records if r.get("model_version_id") and r["model_version_id"] not in _model_labels}
    if missing:
        found = await database_sync_to_async(_load_labels)(sorted(missing))
        _model_labels.update({model_id: found.get(model_id, "") for model_id in missing})  # unknown ids asked once
    return [
        (
            record,
            orjson.dumps({"v": SCHEMA_VERSION, **record, "model": _model_labels.get(record.get("model_version_id") or "", "")}),
            created_us(record.get("created_at")),
        )
        for record in records
    ]


class Subscription:
    def __init__(self, product: str):
        self.product = product
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_BATCHES)
        self.dropped_records = 0

    def offer(self, message: dict) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            oldest = self.queue.get_nowait()
            self.dropped_records += len(oldest.get("prepared") or [])
            self.queue.put_nowait(message)


class _Feed:
    def __init__(self, product: str, loop: asyncio.AbstractEventLoop):
        self.product, self.loop = product, loop
        self.subscribers: set[Subscription] = set()
        self.layer = get_channel_layer()
        self.channel = ""
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.channel = await self.layer.new_channel(f"live.{self.product}.")
        await self.layer.group_add(group_name(self.product), self.channel)
        self.task = asyncio.create_task(self._pump(), name=f"live-feed-{self.product}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        with contextlib.suppress(Exception):
            await self.layer.group_discard(group_name(self.product), self.channel)

    async def _pump(self) -> None:
        joined = time.monotonic()
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("live feed of %s could not receive; retrying", self.product, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if message.get("type") == "predictions.batch":
                try:
                    prepared = {"prepared": await prepare(message.get("records") or [])}
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("live feed of %s could not prepare a batch; skipped", self.product, exc_info=True)
                    continue
                for subscription in list(self.subscribers):
                    subscription.offer(prepared)
            if time.monotonic() - joined > REJOIN_SECONDS:
                joined = time.monotonic()
                with contextlib.suppress(Exception):
                    await self.layer.group_add(group_name(self.product), self.channel)


class LiveHub:
    def __init__(self):
        self._feeds: dict[str, _Feed] = {}
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests run one per test): nothing of the old one is usable
            self._loop, self._feeds, self._lock = loop, {}, asyncio.Lock()

    async def subscribe(self, product: str) -> Subscription:
        self._ensure_loop()
        subscription = Subscription(product)
        async with self._lock:
            feed = self._feeds.get(product)
            if feed is None:
                feed = _Feed(product, self._loop)
                await feed.start()
                self._feeds[product] = feed
            feed.subscribers.add(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        self._ensure_loop()
        async with self._lock:
            feed = self._feeds.get(subscription.product)
            if feed is None:
                return
            feed.subscribers.discard(subscription)
            if not feed.subscribers:
                del self._feeds[subscription.product]
                await feed.stop()

    def subscribers(self, product: str) -> int:
        feed = self._feeds.get(product)
        return len(feed.subscribers) if feed else 0


hub = LiveHub()
