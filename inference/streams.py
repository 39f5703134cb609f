"""Server-Sent Event consumers of the `stream` process (daphne + Channels), DESIGN.md §5.

``POST /stream/v1/infer`` (`DualInferConsumer`): the body and authentication of ``POST
/v1/infer``; both of the product's dual models (`mlops.models.DualModelConfig`) start at once;
``preliminary`` (fast model) and ``final`` (full model) as each is ready, ``error`` for a model
that timed out or failed, and always ``done`` last. Event schema v1: see the README, "Streams".

``/stream/live/<product>/`` (`LiveConsumer`): every logged prediction of a product as it
happens, for staff (session), fed by the channel-layer group ``predictions.<product>`` that
the prediction log writer publishes to (`audit.publish`), sampled down to
``LIVE_MAX_EVENTS_PER_SECOND`` per subscriber, with heartbeats and ``Last-Event-ID`` resume.

Both are written so that they *receive ``http.disconnect`` while they stream*: Channels'
`AsyncHttpConsumer` handles one message at a time, so a ``handle()`` that loops never sees
the disconnect (channels #1249, #1302). The dual consumer streams from a task while its
``__call__`` keeps reading the connection; the live consumer returns from the request handler
after subscribing and sends from its channel-layer handlers and a ticker task.
"""

import asyncio
import contextlib
import io
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from types import SimpleNamespace

import numpy as np
import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.core.handlers.asgi import ASGIRequest
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.response import Response

from audit.publish import live_record
from inference import validation
from inference.live_hub import hub, prepare
from inference.services import ServiceUnavailable, decide
from inference.stream_metrics import (
    DUAL_DISCONNECTS,
    DUAL_ERRORS,
    DUAL_LATENCY,
    DUAL_STREAMS,
    DUAL_TIMEOUTS,
    LIVE_EVENTS,
    LIVE_SUBSCRIBERS,
)
from inference.stream_models import DualRoute, ModelRun, dual_models
from inference.stream_recorder import recorder, redact_features
from inference.validation import InvalidInput
from inference.views import InferenceAPIView
from mlops.api.errors import error_body
from mlops.choices import ApiCapability

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
]


def sse(event: str, data: dict, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\nevent: {event}\n" if event_id is not None else f"event: {event}\n"
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


# --- POST /stream/v1/infer: authentication and validation through the API's own view ---------


class RunInProgress(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "run_in_progress"
    default_detail = "A run with this run_id is still streaming; repeat the request when it has finished."


@dataclass
class Plan:
    run_id: str
    event_id: str = ""
    product: str = ""
    features: dict = field(default_factory=dict)
    route: DualRoute | None = None
    rows: tuple[np.ndarray, np.ndarray] | None = None
    replay: list[dict] | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # the API's own (rate-limit) headers


class DualInferGate(InferenceAPIView):
    """Everything before the first event, as the API does it: body size, authentication, rate
    limit, the ``predict`` capability, the envelope and features (400 naming each field).

    Not routed: `DualInferConsumer` calls it with the stream request; success is a 204 with the
    validated `Plan` on the request, any refusal is the API's own JSON error response.
    """

    api_permission = ApiCapability.PREDICT

    def post(self, request):
        data = self.read_json(request, settings.INFERENCE_MAX_BODY_BYTES)
        run_id = None
        if isinstance(data, dict) and "run_id" in data:
            data = dict(data)
            run_id = data.pop("run_id")
            if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
                raise InvalidInput(
                    {"run_id": ["1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit."]}, "invalid_envelope"
                )
        item = validation.infer_request(data)
        request._request.stream_plan = plan_run(item, run_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


def plan_run(item: validation.InferRequest, run_id: str | None) -> Plan:
    if run_id is not None:
        state, events = recorder.recorded(run_id)
        if state == "running":
            raise RunInProgress()
        if state == "finished":
            return Plan(run_id=run_id, replay=events)
    route, why = dual_models.route(item.product)
    if route is None:
        if why:
            raise ServiceUnavailable("not_ready", f"The dual models of {item.product!r} cannot serve now ({why}).")
        raise InvalidInput({"product": [f"{item.product!r} has no dual-model configuration."]}, "unknown_product")
    fast_row = validation.feature_row(item.features, route.fast.feature_names, route.fast.dtype)
    full_row = (
        fast_row
        if (route.full.feature_names, route.full.dtype) == (route.fast.feature_names, route.fast.dtype)
        else validation.feature_row(item.features, route.full.feature_names, route.full.dtype)
    )
    run_id = run_id or uuid.uuid4().hex
    if not recorder.memory.claim(run_id):
        raise RunInProgress()
    return Plan(run_id, item.event_id, item.product, item.features, route, (fast_row, full_row))


_gate_view = DualInferGate.as_view()


def gate(scope: dict, body: bytes) -> tuple[Plan | None, Response | None]:
    """Run `DualInferGate` on the stream request: ``(plan, None)`` or ``(None, error response)``."""
    request = ASGIRequest(scope, io.BytesIO(body))
    # What was read is what counts: a chunked body has no Content-Length, and one cut at the limit is refused for its size.
    request.META["CONTENT_LENGTH"] = str(len(body))
    request.user = scope.get("user") or AnonymousUser()  # session authentication reads it
    if "session" in scope:
        request.session = scope["session"]
    response = _gate_view(request)
    plan = getattr(request, "stream_plan", None)
    if plan is not None and response.status_code == status.HTTP_204_NO_CONTENT:
        extra = [(key.lower(), value) for key, value in response.items() if key.lower().startswith("x-ratelimit")]
        plan.headers = [(key.encode("latin-1"), value.encode("latin-1")) for key, value in extra]
        return plan, None
    if plan is not None and plan.replay is None:  # claimed, then refused (cannot happen today)
        recorder.memory.finish(plan.run_id, [])
    response.render()
    return None, response


# --- POST /stream/v1/infer: the stream -------------------------------------------------------

PARTS = {"fast": "preliminary", "full": "final"}


class DualInferConsumer(AsyncHttpConsumer):
    """``POST /stream/v1/infer``. See the module docstring and the README ("Streams")."""

    channel_layer_alias = "__no_channel_layer__"  # answers one request; never addressed by the layer

    async def __call__(self, scope, receive, send):
        self.scope, self.base_send = scope, send
        self.disconnected = False
        self.runs: list[ModelRun] = []
        if scope.get("method") != "POST":
            await self._json(405, error_body("method_not_allowed", "Use POST."), [(b"allow", b"POST")])
            return
        body = await self._read_body(receive)
        if body is None:
            return  # the client left before its body arrived
        plan, refusal = await database_sync_to_async(gate)(scope, body)
        if refusal is not None:
            headers = [(key.encode("latin-1"), value.encode("latin-1")) for key, value in refusal.items()]
            await self.send_response(refusal.status_code, refusal.content, headers=headers)
            return
        if plan.replay is not None:
            await self._replay(plan)
            return
        stream = asyncio.create_task(self._stream(plan), name=f"dual-stream-{plan.run_id[:16]}")
        watcher = asyncio.create_task(self._wait_for_disconnect(receive), name=f"dual-watch-{plan.run_id[:16]}")
        try:
            await asyncio.wait({stream, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done() and not stream.done():
                self.disconnected = True
                for run in self.runs:
                    run.cancel("disconnect")
            await stream  # it joins its runs' threads before it returns
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if not stream.done():  # we were cancelled ourselves (server shutdown)
                for run in self.runs:
                    run.cancel("disconnect")
                stream.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await stream

    async def _read_body(self, receive) -> bytes | None:
        chunks, size, limit = [], 0, settings.INFERENCE_MAX_BODY_BYTES + 1
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            if size < limit:  # beyond the limit the gate refuses from what was kept
                chunks.append(chunk[: limit - size])
                size += len(chunks[-1])
            if not message.get("more_body"):
                return b"".join(chunks)

    @staticmethod
    async def _wait_for_disconnect(receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _json(self, status_code: int, body: dict, headers=()) -> None:
        await self.send_response(status_code, orjson.dumps(body), headers=[(b"content-type", b"application/json"), *headers])

    async def _replay(self, plan: Plan) -> None:
        await self.send_headers(status=200, headers=[*SSE_HEADERS, *plan.headers, (b"x-run-id", plan.run_id.encode())])
        chunks = []
        for event in plan.replay:
            data = {**event["data"], "replayed": True} if event["event"] == "done" else event["data"]
            chunks.append(sse(event["event"], data, event["id"]))
        await self.send_body(b"".join(chunks))
        DUAL_STREAMS.labels(plan.replay[-1]["data"].get("product", "") if plan.replay else "", "replayed").inc()

    async def _stream(self, plan: Plan) -> None:
        started = time.perf_counter()
        route, run_id = plan.route, plan.run_id
        events: list[dict] = []
        statuses = {"fast": "cancelled", "full": "cancelled"}
        runs = {
            "fast": ModelRun(part="fast", model=route.fast, row=plan.rows[0], timeout=route.fast_timeout, run_id=run_id),
            "full": ModelRun(part="full", model=route.full, row=plan.rows[1], timeout=route.full_timeout, run_id=run_id),
        }
        self.runs = list(runs.values())
        try:
            for run in self.runs:
                run.start()  # both at once, before anything is sent
            await self.send_headers(status=200, headers=[*SSE_HEADERS, *plan.headers, (b"x-run-id", run_id.encode())])
            await self.send_body(f": run {run_id}\n\n".encode(), more_body=True)  # the client sees the stream open
            # Both run at once; the fast part is reported first, so the order is always preliminary (or
            # the fast model's error), then final (or the full model's error). A full model that beats
            # the fast one waits for it, at most the fast timeout.
            for run in self.runs:
                await self._settle(run)
                statuses[run.part] = await self._report(plan, run, events)
            summary = {
                "v": SCHEMA_VERSION,
                "run_id": run_id,
                "event_id": plan.event_id,
                "product": plan.product,
                "preliminary": statuses["fast"],
                "final": statuses["full"],
                "succeeded": [PARTS[part] for part in ("fast", "full") if statuses[part] == "ok"],
                "total_latency_ms": round((time.perf_counter() - started) * 1000, 3),
                "replayed": False,
            }
            await self._emit(events, "done", summary)
        finally:
            # No thread outlives its stream: cancel what still runs, wait for the threads to end.
            for run in self.runs:
                if not run.finished:
                    run.cancel("disconnect" if self.disconnected else "stream_ended")
            for run in self.runs:
                if not await run.join(settings.STREAM_CANCEL_GRACE_SECONDS):
                    logger.error("dual-model run %s of %s did not stop after its cancellation", run.part, run.model.label)
            if not self.disconnected:
                with contextlib.suppress(Exception):
                    await self.send_body(b"")
            try:  # recorded whatever happened above, so the run id is never left "running"
                self._finish(plan, runs, statuses, events, started)
            except Exception:
                recorder.memory.finish(plan.run_id, events)
                logger.exception("dual run %s could not be recorded", plan.run_id)

    async def _settle(self, run: ModelRun) -> ModelRun:
        if not await run.wait(max(0.0, run.deadline - time.monotonic())):  # the timeout counts from the run's start
            run.cancel("timeout")
            await run.wait(settings.STREAM_CANCEL_GRACE_SECONDS)
        return run

    async def _report(self, plan: Plan, run: ModelRun, events: list[dict]) -> str:
        kind, value = run.outcome or ("cancelled", run.cancel_reason)
        model, product = run.model, plan.product
        if run.cancel_reason == "timeout":
            kind = "timeout"
        if kind == "ok":
            DUAL_LATENCY.labels(product, run.part, model.label).observe((run.latency_ms or 0) / 1000)
            data = {
                **self._model_fields(plan, run),
                "score": value,
                "decision": decide(value, model.threshold),
                "threshold": model.threshold,
                "latency_ms": run.latency_ms,
            }
            await self._emit(events, PARTS[run.part], data)
            return "ok"
        if kind == "timeout":
            DUAL_TIMEOUTS.labels(product, run.part, model.label).inc()
            message = f"{model.label} did not answer within {run.timeout * 1000:g} ms; the run was cancelled."
            await self._emit(events, "error", {**self._model_fields(plan, run), "code": "timeout", "message": message})
            return "timeout"
        if kind == "error":
            DUAL_ERRORS.labels(product, run.part, model.label).inc()
            await self._emit(events, "error", {**self._model_fields(plan, run), "code": "model_error", "message": str(value)})
            return "model_error"
        return "cancelled"  # the client left

    @staticmethod
    def _model_fields(plan: Plan, run: ModelRun) -> dict:
        return {
            "v": SCHEMA_VERSION,
            "run_id": plan.run_id,
            "event_id": plan.event_id,
            "product": plan.product,
            "model": run.part,
            "model_id": run.model.id,
            "model_name": run.model.spec.name,
            "model_version": run.model.spec.version,
        }

    async def _emit(self, events: list[dict], event: str, data: dict) -> None:
        event_id = f"{data['run_id']}:{len(events) + 1}"
        events.append({"id": event_id, "event": event, "data": data})
        if not self.disconnected:
            await self.send_body(sse(event, data, event_id), more_body=True)

    def _finish(self, plan: Plan, runs: dict[str, ModelRun], statuses: dict, events: list[dict], started: float) -> None:
        if self.disconnected:
            DUAL_DISCONNECTS.labels(plan.product).inc()
        ok = sum(1 for value in statuses.values() if value == "ok")
        DUAL_STREAMS.labels(plan.product, "complete" if ok == 2 else "partial" if ok else "failed").inc()
        outputs = {}
        for part, run in runs.items():
            kind, value = run.outcome or ("cancelled", "")
            outputs[part] = (
                {"score": value, "decision": decide(value, run.model.threshold), "threshold": run.model.threshold}
                if statuses[part] == "ok" and kind == "ok"
                else None
            )
        errors = [
            {"model": event["data"]["model"], "code": event["data"]["code"], "message": event["data"]["message"]}
            for event in events
            if event["event"] == "error"
        ]
        errors += [
            {"model": part, "code": "cancelled", "message": "the client disconnected"} for part in runs if statuses[part] == "cancelled"
        ]
        record = {
            "run_id": plan.run_id,
            "product": plan.product,
            "event_id": plan.event_id,
            "features": redact_features(plan.features),
            "fast_model_id": runs["fast"].model.uuid,
            "full_model_id": runs["full"].model.uuid,
            "fast_output": outputs["fast"],
            "full_output": outputs["full"],
            "fast_latency_ms": runs["fast"].latency_ms,
            "full_latency_ms": runs["full"].latency_ms,
            "errors": errors,
            "events": events,
            "disconnected": self.disconnected,
            "total_latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "created_at": timezone.now(),
        }
        try:
            recorder.submit(record)
        except Exception:
            logger.exception("dual run %s could not be queued for recording", plan.run_id)


# --- /stream/live/<product>/ -------------------------------------------------------------------


def _parse_last_event_id(value: str) -> tuple[int, int] | None:
    """``"<seq>.<created_at in µs>"`` -> (seq, µs)."""
    seq, _, created = value.strip().partition(".")
    if seq.isdigit() and created.isdigit():
        return int(seq), int(created)
    return None


def _replay_rows(product: str, after_us: int, limit: int) -> list[dict]:
    from audit.models import PredictionLog

    after = datetime.fromtimestamp(after_us / 1_000_000, tz=UTC)
    fields = ["prediction_id", "event_id", "product", "model_version_id", "role", "score", "decision", "latency_ms", "cached"]
    fields += ["fallback_reason", "primary_prediction_id", "score_diff", "diff_class", "decision_agrees", "created_at"]
    rows = PredictionLog.objects.filter(product=product, created_at__gt=after).order_by("created_at").values(*fields)[: limit + 1]
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

    The process subscribes to the product's group once (`inference.live_hub`); this consumer
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
