"""Best-effort publication of written predictions to the channel layer, for the live pages.

After a batch is in the database, its records go to the channel-layer group
``predictions.<product>`` as messages ``{"type": "predictions.batch", "records": [...]}`` of
at most ``CHUNK`` compact records (no features: the live page shows scores, decisions and
shadow diffs, and features may carry PII even after redaction). A thread of its own sends
them, behind a small bounded queue: a slow or absent Redis costs dropped live updates
(counted in ``audit_log_publish_dropped_total``), never a slower or failed log write.
"""

import asyncio
import logging
import operator
import queue
import threading

from audit.metrics import PUBLISH_DROPPED
from audit.records import LIVE, plain
from mlops.background.process import STOPPED, ProcessLocal

logger = logging.getLogger(__name__)

CHUNK = 100


def group_name(product: str) -> str:
    return f"predictions.{product}"


_live_values = operator.itemgetter(*LIVE)
_NO_LIVE_VALUES = dict.fromkeys(LIVE)  # what a record that leaves a live field out shows: None
_PLAIN = frozenset({str, int, float, bool, type(None)})  # types `plain` returns unchanged


def live_record(record: dict) -> dict:
    """The compact, msgpack-safe form of a record sent to the live pages."""
    # Once per written record: the field picking is one C call, and `plain` is called only for
    # the values it would change (uuids, datetimes), not for all fifteen.
    values = _live_values(_NO_LIVE_VALUES | record)
    return {key: value if type(value) in _PLAIN else plain(value) for key, value in zip(LIVE, values, strict=True)}


def messages(records: list[dict]) -> list[tuple[str, dict]]:
    """``(group, message)`` pairs carrying a written batch: per product, at most `CHUNK` records each."""
    by_product: dict[str, list[dict]] = {}
    for record in records:
        by_product.setdefault(record["product"], []).append(live_record(record))
    return [
        (group_name(product), {"type": "predictions.batch", "records": items[start : start + CHUNK]})
        for product, items in by_product.items()
        for start in range(0, len(items), CHUNK)
    ]


class Publisher:
    POLL_SECONDS = 0.5  # how soon the thread notices that the process is exiting
    SEND_TIMEOUT = 2.0  # one group_send at most: an unreachable Redis must not hold up exit

    def __init__(self, *, max_batches: int = 64):
        self._max_batches = max_batches
        self._fresh()
        # state: "sending" while batches wait or go out, "idle" once the queue is drained
        self.process = ProcessLocal("live publisher", self._start, after_fork=self._fresh)

    def _fresh(self) -> None:
        """At construction and in a forked child: the parent's queue, thread and layer are not ours."""
        self._queue: queue.Queue = queue.Queue(maxsize=self._max_batches)
        self._layer = None
        self._exited = False

    def publish(self, records: list[dict]) -> None:
        """Hand a written batch over; never blocks, never raises."""
        if self._exited or not threading.main_thread().is_alive():
            # The process is exiting (the log's last flush runs from atexit): no live page is
            # left to feed, and no thread or event loop may start while the interpreter finalizes.
            PUBLISH_DROPPED.inc()
            return
        try:
            self.process.ensure_started()
            self._queue.put_nowait(records)
        except queue.Full:
            PUBLISH_DROPPED.inc()
        except Exception:
            PUBLISH_DROPPED.inc()
            logger.debug("prediction publish failed", exc_info=True)

    def _start(self) -> None:
        # Not a daemon: the interpreter waits for it to leave its event loop before it
        # finalizes (a daemon thread inside asyncio and a socket at that point can crash
        # the process); it leaves within POLL_SECONDS of the main thread's end.
        threading.Thread(target=self._run, name="prediction-log-publisher", daemon=False).start()
        self.process.set_state("idle")

    def _run(self) -> None:
        # One event loop for the thread's life (asyncio.Runner): the channel layer keeps its Redis
        # connections per loop, and no executor is involved (async_to_sync starts a loop per
        # message in an executor, which refuses work once the interpreter begins to exit). The
        # runner's close cancels what is left in the loop and closes its connections, so nothing
        # half-finished is left for the interpreter's last garbage collection (it can crash there).
        try:
            with asyncio.Runner() as runner:
                while threading.main_thread().is_alive():
                    try:
                        records = self._queue.get(timeout=self.POLL_SECONDS)
                    except queue.Empty:
                        continue
                    self.process.set_state("sending")
                    try:
                        runner.run(asyncio.wait_for(self._send(records), self.SEND_TIMEOUT))
                    except Exception:
                        PUBLISH_DROPPED.inc()
                        logger.warning("could not publish %d predictions to the live channel group", len(records), exc_info=True)
                    finally:
                        self._queue.task_done()
                        self.process.set_state("sending" if self._queue.unfinished_tasks else "idle")
        finally:
            self._exited = True
            PUBLISH_DROPPED.inc(self._queue.qsize())
            self.process.set_state(STOPPED)

    async def _send(self, records: list[dict]) -> None:
        from channels.layers import get_channel_layer

        if self._layer is None:
            self._layer = get_channel_layer()
        if self._layer is None:
            return
        for group, message in messages(records):
            await self._layer.group_send(group, message)
