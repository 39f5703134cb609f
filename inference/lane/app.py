"""The hot lane as an RSGI application: ``granian --interface rsgi inference.lane.app:app``.

Why RSGI on granian: granian's own protocol hands the request to Python with the least work per
request of the servers measured for this lane (bench/README.md, "Choosing the lane's server"), and
granian is maintained, keeps connections alive and runs several worker processes itself.

Per request, on the worker's event loop: read the body (only once its announced length is within
the endpoint's limit, at most that limit + 1 bytes otherwise), then `endpoints.handle`. Answering a
prediction does not block (the models, credentials and configuration are in process; the log
record goes to the writer's queue), so it runs on the loop itself: a hop to a thread would cost
more than the prediction. What may block (reading a recorded prediction, a credential not loaded
yet, the first requests before the models are loaded) runs on a small thread pool instead. While a
served model is micro-batched, the single predictions whose bodies arrived together are scored in
one session call per model before each is answered (`inference.microbatch`).

Worker lifecycle (granian calls ``__rsgi_init__`` in each worker before it serves and
``__rsgi_del__`` once it has stopped serving, in-flight requests answered): start loading the
models and credentials at once, so ``/readyz`` turns green without a first request; at the end,
flush the prediction log. granian's workers end through ``os._exit`` (multiprocessing), which
skips ``atexit``: ``__rsgi_del__`` is where every answered record reaches the log.
"""

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import close_old_connections  # noqa: E402

from audit import writer  # noqa: E402
from inference import microbatch  # noqa: E402
from inference.lane import endpoints  # noqa: E402
from inference.lane.http import Request  # noqa: E402
from inference.runtime import runtime  # noqa: E402
from mlops import hooks  # noqa: E402
from mlops.background import interpreter  # noqa: E402
from mlops.background.reloading import WouldWait  # noqa: E402
from mlops.security.authentication import api_keys  # noqa: E402

logger = logging.getLogger(__name__)


class Lane:
    """The RSGI application object (granian finds ``__rsgi__``, ``__rsgi_init__``, ``__rsgi_del__``)."""

    def __init__(self) -> None:
        self._threads: ThreadPoolExecutor | None = None
        self._gathered: list[tuple[Request, asyncio.Future]] = []  # single predictions to score together

    def __rsgi_init__(self, loop) -> None:
        self._threads = ThreadPoolExecutor(max_workers=settings.INFERENCE_LANE_THREADS, thread_name_prefix="lane")
        writer.use_server_signal_handling()  # granian's worker owns SIGTERM and SIGINT
        runtime.ensure_started()
        interpreter.tune_for_serving()  # garbage collection and the GIL switch interval
        self._threads.submit(self._load_credentials)
        hooks.serving_started.send(sender=__name__)

    def __rsgi_del__(self, loop) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        if not writer.shutdown():
            logger.error("prediction log flush timed out; unwritten records are lost")

    async def __rsgi__(self, scope, protocol) -> None:
        if scope.proto != "http":  # websockets: nothing here speaks them
            return
        endpoint, _ = endpoints.route(scope.path)
        headers = scope.headers
        request = Request(
            method=scope.method,
            path=scope.path,
            headers=headers,
            client_addr=scope.client.rsplit(":", 1)[0],
            scheme=scope.scheme,
        )
        limit = endpoints.body_limit(endpoint)
        if limit:
            request.body = await _read_body(protocol, headers.get("content-length"), limit)
        together = None
        if endpoint is endpoints.INFER and (snapshot := runtime.peek()) is not None and microbatch.batches_in(snapshot):
            together = await self._gather(request)
        try:
            with microbatch.scoring_together(together):
                answer = endpoints.handle(request, may_wait=False)
        except WouldWait:  # answered alone, from a thread
            answer = await asyncio.get_running_loop().run_in_executor(self._threads, _handle_waiting, request)
        protocol.response_bytes(answer.status, answer.headers, answer.body)

    def _gather(self, request: Request) -> asyncio.Future:
        """Its share of what is scored for the predictions gathered with it: those whose bodies
        arrive before the loop's next turn (or within INFERENCE_MICROBATCH_MAX_WAIT_US)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._gathered.append((request, future))
        if len(self._gathered) == 1:
            wait = settings.INFERENCE_MICROBATCH_MAX_WAIT_US / 1e6
            loop.call_later(wait, self._score_gathered) if wait else loop.call_soon(self._score_gathered)
        return future

    def _score_gathered(self) -> None:
        gathered, self._gathered = self._gathered, []
        results: dict = {}
        try:
            if len(gathered) > 1:
                results = endpoints.score_together([request for request, _ in gathered])
        except Exception:  # each request is then answered alone, as without batching
            logger.exception("scoring gathered predictions together failed")
        finally:
            for _, future in gathered:
                future.set_result(results)

    @staticmethod
    def _load_credentials() -> None:
        try:
            api_keys.warm()
        except Exception:  # the first request tries again, and answers 503 if it cannot
            logger.warning("could not load the API keys at start", exc_info=True)
        finally:
            close_old_connections()


def _handle_waiting(request: Request):
    # Django's request_started / request_finished do this for the DRF lane: a thread's database
    # connection goes back to the pool (or is closed) between requests.
    close_old_connections()
    try:
        return endpoints.handle(request, may_wait=True)
    finally:
        close_old_connections()


async def _read_body(protocol, content_length: str | None, limit: int) -> bytes:
    """The body when its announced length is within ``limit``; nothing when it is not (the handler
    refuses it from the header); at most ``limit + 1`` bytes of a body sent without a length."""
    if content_length is not None:
        try:
            announced = int(content_length)
        except ValueError:
            return b""  # the handler refuses the header
        return await protocol() if announced <= limit else b""
    body = bytearray()
    async for chunk in protocol:
        body += chunk
        if len(body) > limit:
            break
    return bytes(body[: limit + 1])


app = Lane()
