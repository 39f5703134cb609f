"""OpenTelemetry spans of the platform: a shared no-op unless an exporter is configured.

Call sites write::

    from mlops.observability.tracing import span

    with span("model_inference", product=product, model_id=model.id, role=role) as s:
        score = run(...)
        s.set(decision=decision, cached=False)

Keyword attributes become span attributes under the ``mlops.`` namespace (``mlops.product``,
``mlops.model_id``, ...); ``None`` values are left out. An exception leaving the block is
recorded on the span and sets its status to error.

Cost. With no exporter configured (the default), `span` returns one shared do-nothing context
manager: no OpenTelemetry object is created per call (``bench/tracing_cost.py`` measures it).
Tracing is on when ``TRACING_EXPORTER`` is set ("otlp" or "console"; setting only
``OTEL_EXPORTER_OTLP_ENDPOINT`` implies "otlp"), or when something else (for example
``opentelemetry-instrument``) installed a real tracer provider before the first span. Only then
is the SDK imported; it is an optional dependency (``deploy/requirements-tracing.txt``).

The spans, where they are opened, and the attributes an operator filters by (all ``mlops.``-prefixed):

==========================  ============================================  ==========================================================
``model_load``              inference/runtime.py (building the snapshot)  product, model_id, model_name, model_version
``model_inference``         inference/services.py (one run or batch)      product, model_id, model_name, model_version, rows,
                                                                          cache (hit, shared_hit, miss) or misses (batch)
``shadow_inference``        inference/shadow.py (shadow pool)             product, model_id, model_name, model_version, rows
``diff_classification``     inference/shadow.py (per shadowed answer)     product, model_id, diff_class, score_diff
``outcome_ingestion``       audit/services.py                             source, count
``rate_limit_check``        mlops/security/ratelimits.py (in process)     group, principal_kind, windows
``api_key_validation``      mlops/security/authentication.py              key_prefix (never the secret)
``enable_shadow_mode``      mlops/services/rollout.py (shadow_enable)     product, shadow_version, sample_basis_points, reason
``disable_shadow_mode``     mlops/services/rollout.py (shadow_disable)    product, previous_shadow, reason
``clear_runtime_override``  mlops/services/rollout.py (shadow_clear)      product, reverted_to_env (an override was removed), reason
==========================  ============================================  ==========================================================

A failure inside a span (a refused model, a timed-out run, a refused key, the cache down) marks
it as an error with the exception recorded.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry import trace

logger = logging.getLogger(__name__)

SPAN_NAMES = (
    "model_load",
    "model_inference",
    "shadow_inference",
    "diff_classification",
    "outcome_ingestion",
    "rate_limit_check",
    "api_key_validation",
    "enable_shadow_mode",
    "disable_shadow_mode",
    "clear_runtime_override",
)
ATTRIBUTE_PREFIX = "mlops."
INSTRUMENTATION_NAME = "mlops"


class _NoopSpan:
    """What `span` returns while tracing is off: enters, exits and accepts attributes, doing nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        return None

    def set(self, **attributes) -> None:
        return None

    @property
    def recording(self) -> bool:
        return False


_NOOP = _NoopSpan()


def _attributes(values: dict) -> dict:
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        if not isinstance(value, str | bool | int | float):
            value = str(value)
        out[ATTRIBUTE_PREFIX + key] = value
    return out


class _RecordingSpan:
    """A real span as a context manager, with `set` for attributes known only at the end."""

    __slots__ = ("_manager", "_span")

    def __init__(self, tracer, name: str, attributes: dict):
        self._manager = tracer.start_as_current_span(name, attributes=_attributes(attributes))
        self._span = None

    def __enter__(self) -> _RecordingSpan:
        self._span = self._manager.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        return self._manager.__exit__(exc_type, exc, tb)

    def set(self, **attributes) -> None:
        if self._span is not None:
            self._span.set_attributes(_attributes(attributes))

    @property
    def recording(self) -> bool:
        return self._span is not None and self._span.is_recording()


# None until the first span (or `configure`) decides; then the tracer, or False when off.
_tracer = None
_lock = threading.Lock()


def span(name: str, **attributes) -> _NoopSpan | _RecordingSpan:
    """A span named ``name`` around a block (see the module docstring)."""
    tracer = _tracer
    if tracer is None:
        tracer = _initialize()
    if tracer is False:
        return _NOOP
    return _RecordingSpan(tracer, name, attributes)


def enabled() -> bool:
    tracer = _tracer if _tracer is not None else _initialize()
    return tracer is not False


def configure(provider=None) -> None:
    """Use ``provider`` (an SDK ``TracerProvider``) for every span from now on; None turns tracing off.

    For tests (with an in-memory exporter) and for processes that build their own provider.
    """
    global _tracer
    with _lock:
        _tracer = provider.get_tracer(INSTRUMENTATION_NAME) if provider is not None else False


def reset() -> None:
    """Forget the decision: the next span reads the settings again (tests)."""
    global _tracer
    with _lock:
        _tracer = None


def _initialize():
    global _tracer
    with _lock:
        if _tracer is None:
            _tracer = _build_tracer()
        return _tracer


def _build_tracer():
    from django.conf import settings

    exporter_name = settings.TRACING_EXPORTER.lower()
    if not exporter_name:
        # Someone else (opentelemetry-instrument, a test) may have set up a real provider.
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            return False
        return trace.get_tracer(INSTRUMENTATION_NAME)
    try:
        provider = _sdk_provider(exporter_name, settings)
    except ImportError as exc:
        logger.warning(
            "TRACING_EXPORTER=%s but the OpenTelemetry SDK or exporter is not installed (%s): tracing stays off", exporter_name, exc
        )
        return False
    except ValueError as exc:
        logger.warning("tracing stays off: %s", exc)
        return False
    trace.set_tracer_provider(provider)  # shared with any other instrumentation in this process
    logger.info("tracing on: %s exporter, service %s", exporter_name, settings.SERVICE_NAME)
    return provider.get_tracer(INSTRUMENTATION_NAME)


def _sdk_provider(exporter_name: str, settings):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT
        # The exporter reads OTEL_EXPORTER_OTLP_* itself; an explicit endpoint gets the traces path.
        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces") if endpoint else OTLPSpanExporter()
    elif exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        raise ValueError(f"TRACING_EXPORTER={exporter_name!r} is not one of otlp, console")
    ratio = float(settings.TRACING_SAMPLE_RATIO)
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.SERVICE_NAME}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
