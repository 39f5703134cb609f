"""The hot lane's routes and its one request handler, in the DRF lane's order of checks.

The order is the DRF lane's (`mlops.api.base.BaseAPIView`), so that the same bad request gets the
same answer from either lane: SSL redirect (SecurityMiddleware), body size from Content-Length,
credentials (401), rate limit (429), capability (403), method (405), then the endpoint. Every
answer of an endpoint carries ``Allow`` (as DRF's do) and the rate-limit headers once the caller
was counted; every answer carries the security headers.

``handle`` is synchronous. With ``may_wait=False`` (the event loop) it raises
`mlops.background.reloading.WouldWait` where answering would wait: a credential the in-process
cache may be loading, the models not loaded yet, or an endpoint that reads the database; the
application then calls it again on a thread with ``may_wait=True``. Nothing before that point has
counted or changed anything, so asking twice is safe.
"""

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import prometheus_client
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from prometheus_client import Counter, multiprocess
from rest_framework import exceptions

from inference import api, selectors
from inference.errors import as_api_exception
from inference.lane.http import Answer, Request, json_answer, security_headers
from inference.runtime import runtime
from mlops.api.content import check_announced_length
from mlops.api.errors import api_error, error_body
from mlops.api.permissions import denial_message
from mlops.background.reloading import WouldWait
from mlops.choices import ApiCapability
from mlops.security import ratelimits
from mlops.security.authentication import (
    AUTHENTICATE_HEADER,
    DEV_PRINCIPAL,
    Principal,
    dev_bypass_active,
    log_dev_bypass,
    principal_from_headers,
)

logger = logging.getLogger(__name__)

RESPONSES = Counter("mlops_lane_responses", "Answers of the hot lane by endpoint and HTTP status.", ["endpoint", "status"])


@lru_cache(maxsize=256)
def _responses(endpoint: str, status: int):
    return RESPONSES.labels(endpoint, str(status))


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the metrics label
    methods: frozenset[str]  # what it answers; others get 405
    allow: str  # the Allow header, as DRF's view of the same endpoint sends it
    capability: str | None  # None: public (health probes)
    body_limit_setting: str | None  # the setting that bounds its body (None: it reads none)
    answer: Callable[[Request, Principal | None, str], tuple[int, object]]
    blocking: bool = False  # waits or reads the database: never on the event loop
    predicts: bool = False  # answers from the loaded models (which the first request may wait for)


def _infer(request: Request, caller: Principal | None, _arg: str):
    return 200, api.infer(lambda _limit: request.body, **_envelope(request, caller))


def _infer_batch(request: Request, caller: Principal | None, _arg: str):
    return 200, api.infer_batch(lambda _limit: request.body, **_envelope(request, caller))


def _envelope(request: Request, caller: Principal | None) -> dict:
    return {"content_length": request.header("content-length"), "request_id": request.header("x-request-id") or "", "caller": caller}


def _recorded(request: Request, caller: Principal | None, prediction_id: str):
    return 200, api.recorded_prediction(prediction_id, caller=caller)


def _health(request: Request, caller: Principal | None, _arg: str):
    return 200, {"status": "ok"}


def _ready(request: Request, caller: Principal | None, _arg: str):
    ready, body = selectors.readiness()
    return (200 if ready else 503), body


POST = frozenset({"POST"})
GET = frozenset({"GET", "HEAD"})
INFER = Endpoint("infer", POST, "POST", ApiCapability.PREDICT, "INFERENCE_MAX_BODY_BYTES", _infer, predicts=True)
INFER_BATCH = Endpoint("infer_batch", POST, "POST", ApiCapability.PREDICT, "INFERENCE_BATCH_MAX_BODY_BYTES", _infer_batch, predicts=True)
RECORDED = Endpoint("prediction_detail", GET, "GET, HEAD", ApiCapability.READ_PREDICTIONS, None, _recorded, blocking=True)
HEALTH = Endpoint("healthz", GET, "GET, HEAD", None, None, _health)
READY = Endpoint("readyz", GET, "GET, HEAD", None, None, _ready)
METRICS_PATH = "/metrics"
PREDICTION_PREFIX = "/v1/infer/"
ROUTES = {"/v1/infer": INFER, "/v1/infer/batch": INFER_BATCH, "/healthz": HEALTH, "/readyz": READY}


def score_together(requests: list[Request]) -> dict:
    """Single predictions that arrived together, scored ahead (`inference.api.score_together`):
    only those whose credentials may predict, so that nothing is run for a caller who will be
    refused. Checks nothing that counts (the rate limit): each is then answered by `handle`."""
    bodies = []
    for request in requests:
        try:
            caller = principal_from_headers(request.header("authorization"), request.header("x-api-key"), wait=False)
        except (exceptions.AuthenticationFailed, WouldWait):
            continue
        if request.method == "POST" and caller is not None and caller.has_capability(ApiCapability.PREDICT):
            bodies.append((request.body, request.header("content-length")))
    return api.score_together(bodies) if len(bodies) > 1 else {}


def route(path: str) -> tuple[Endpoint | None, str]:
    """The endpoint of ``path`` and its path argument (the prediction id)."""
    endpoint = ROUTES.get(path)
    if endpoint is not None:
        return endpoint, ""
    if path.startswith(PREDICTION_PREFIX) and "/" not in (prediction_id := path[len(PREDICTION_PREFIX) :]) and prediction_id:
        return RECORDED, prediction_id
    return None, ""


def body_limit(endpoint: Endpoint | None) -> int:
    """How many bytes of body the application reads for ``endpoint`` (at most this + 1)."""
    if endpoint is None or endpoint.body_limit_setting is None:
        return 0
    return getattr(settings, endpoint.body_limit_setting)


def handle(request: Request, *, may_wait: bool) -> Answer:
    """The answer to ``request``; raises `WouldWait` only when ``may_wait`` is False."""
    redirect = _ssl_redirect(request)
    if redirect is not None:
        return redirect
    if request.path == METRICS_PATH:
        return _metrics(request)
    endpoint, argument = route(request.path)
    if endpoint is None:
        return _finish(request, json_answer(404, error_body("not_found", "No such endpoint.")))
    if endpoint.blocking and not may_wait:
        raise WouldWait(endpoint.name)
    usage = None
    try:
        check_announced_length(request.header("content-length"))
        caller = _authenticate(request, may_wait)
        if endpoint.capability is not None:
            usage = ratelimits.check_caller(capability=endpoint.capability, principal=caller, ip=_client_ip(request))
            _check_capability(caller, endpoint.capability)
        if request.method not in endpoint.methods:
            raise exceptions.MethodNotAllowed(request.method)
        if endpoint.predicts and not may_wait and runtime.peek() is None:
            raise WouldWait("models")  # the service waits for the first load: not here
        status, data = endpoint.answer(request, caller, argument)
        answer = json_answer(status, data)
    except WouldWait:
        raise
    except ratelimits.RateLimited as exc:
        usage = exc.usage
        answer = _error(exc)
    except Exception as exc:  # every failure answers the platform's error body
        answer = _error(as_api_exception(exc))
    answer.headers.append(("Allow", endpoint.allow))
    if request.vary_cookie:
        answer.headers.append(("Vary", "Cookie"))
    if usage is not None:
        answer.headers.extend(ratelimits.header_items(usage))
    _responses(endpoint.name, answer.status).inc()
    if request.method == "HEAD":
        answer.body = b""
    return _finish(request, answer)


def _finish(request: Request, answer: Answer) -> Answer:
    answer.headers.extend(security_headers(request))
    return answer


def _error(exc: Exception) -> Answer:
    if isinstance(exc, exceptions.APIException):
        status, body, headers = api_error(exc)
        return json_answer(status, body, list(headers.items()))
    logger.exception("unhandled error in the hot lane")
    return json_answer(500, error_body("internal_error", "The server failed to handle this request."))


def _authenticate(request: Request, may_wait: bool) -> Principal | None:
    try:
        caller = principal_from_headers(request.header("authorization"), request.header("x-api-key"), wait=may_wait)
    except exceptions.AuthenticationFailed as exc:
        exc.auth_header = AUTHENTICATE_HEADER
        raise
    if caller is None:
        # The DRF lane then asks the admin session, so its answer varies with the Cookie header;
        # the same URL must tell caches the same whichever lane the router sent it to.
        request.vary_cookie = True
        if dev_bypass_active():
            log_dev_bypass(request.method, request.path)
            return DEV_PRINCIPAL
    return caller


def _check_capability(caller: Principal | None, capability: str) -> None:
    if caller is None:
        exc = exceptions.NotAuthenticated()
        exc.auth_header = AUTHENTICATE_HEADER
        raise exc
    if capability not in caller.capabilities:
        raise exceptions.PermissionDenied(denial_message(caller))


def _client_ip(request: Request) -> str:
    header = ratelimits.client_ip_header()
    return ratelimits.client_ip_of(request.client_addr, request.header(header) if header else None)


def _ssl_redirect(request: Request) -> Answer | None:
    """Django's SECURE_SSL_REDIRECT, as SecurityMiddleware applies it to the DRF lane."""
    if not settings.SECURE_SSL_REDIRECT or request.secure:
        return None
    path = request.path.lstrip("/")
    if any(exempt.search(path) for exempt in _redirect_exempt()):
        return None
    host = settings.SECURE_SSL_HOST or request.header("host") or ""
    if not settings.SECURE_SSL_HOST and not validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS):
        return _finish(request, json_answer(400, error_body("bad_request", "The Host header is not allowed.")))
    answer = Answer(301, b"", [("Content-Type", "text/html; charset=utf-8"), ("Location", f"https://{host}{request.path}")])
    return _finish(request, answer)


@lru_cache(maxsize=1)
def _redirect_exempt() -> list[re.Pattern]:
    return [re.compile(pattern) for pattern in settings.SECURE_REDIRECT_EXEMPT]


def _metrics(request: Request) -> Answer:
    """``GET /metrics``: this process's samples, or every process's in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # as django-prometheus decides for the DRF lane
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    page = prometheus_client.generate_latest(registry)
    return _finish(request, Answer(200, page, [("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)]))
