"""``POST /stream/v1/infer``: the product's fast and full models as ``preliminary`` and ``final`` events, then ``done``.

Both dual models (`mlops.models.DualModelConfig`) start at once; ``error`` for a model that
timed out or failed, and always ``done`` last. Event schema v1: see the README, "Streams".
The consumer streams from a task while its ``__call__`` keeps reading the connection, so it
receives ``http.disconnect`` while it streams (channels #1249, #1302).
"""

import asyncio
import contextlib
import logging
import time

import orjson
from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.utils import timezone

from inference.decisions import decide
from inference.streams.dual_gate import Plan, gate
from inference.streams.dual_models import ModelRun
from inference.streams.metrics import (
    DUAL_DISCONNECTS,
    DUAL_ERRORS,
    DUAL_LATENCY,
    DUAL_STREAMS,
    DUAL_TIMEOUTS,
)
from inference.streams.recorder import recorder, redact_features
from inference.streams.sse import SCHEMA_VERSION, SSE_HEADERS, sse
from mlops.api.errors import error_body
from mlops.observability.logging import log_context

logger = logging.getLogger(__name__)

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
        with log_context(run_id=plan.run_id, event_id=plan.event_id or None, product=plan.product or None):
            await self._answer(plan, receive)

    async def _answer(self, plan: Plan, receive) -> None:
        """The stream of an admitted request (every line logged from here carries its ``run_id``)."""
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
