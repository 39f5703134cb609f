"""Spans: names, attributes and errors through the SDK's in-memory exporter; a shared no-op when off."""

import logging
import sys

import pytest
from opentelemetry.trace import StatusCode

from mlops.observability import tracing


@pytest.fixture
def tracing_off(settings):
    settings.TRACING_EXPORTER = ""
    tracing.reset()
    yield
    tracing.reset()


def test_a_span_carries_its_name_and_namespaced_attributes(spans):
    with tracing.span("model_inference", product="fraud_score", model_id="42", role="canary", rows=3, cached=False, note=None) as s:
        s.set(decision="block")
    [finished] = spans.get_finished_spans()
    assert finished.name == "model_inference"
    assert dict(finished.attributes) == {
        "mlops.product": "fraud_score",
        "mlops.model_id": "42",
        "mlops.role": "canary",
        "mlops.rows": 3,
        "mlops.cached": False,
        "mlops.decision": "block",
    }


def test_values_that_are_not_attribute_types_are_written_as_text(spans):
    import uuid

    key = uuid.uuid4()
    with tracing.span("model_load", model_id=key):
        pass
    assert spans.get_finished_spans()[0].attributes["mlops.model_id"] == str(key)


def test_an_exception_is_recorded_and_marks_the_span_as_failed(spans):
    with pytest.raises(RuntimeError), tracing.span("shadow_inference", product="fraud_score"):
        raise RuntimeError("model failed")
    [finished] = spans.get_finished_spans()
    assert finished.status.status_code == StatusCode.ERROR
    assert [event.name for event in finished.events] == ["exception"]


def test_nested_spans_share_a_trace(spans):
    with tracing.span("model_inference"), tracing.span("diff_classification", diff_class="minimal"):
        pass
    inner, outer = spans.get_finished_spans()
    assert inner.parent.span_id == outer.context.span_id
    assert inner.context.trace_id == outer.context.trace_id


def test_without_an_exporter_span_is_one_shared_no_op(tracing_off):
    first = tracing.span("model_inference", product="fraud_score")
    second = tracing.span("rate_limit_check")
    assert first is second
    assert not tracing.enabled()
    with first as s:
        s.set(decision="allow")  # accepted, ignored
        assert not s.recording


def test_a_missing_exporter_package_leaves_tracing_off_with_a_warning(settings, caplog, monkeypatch):
    # The exporter is not a dependency (deploy/requirements-tracing.txt); None in sys.modules makes its
    # import fail as on a machine without it, whether or not this one has it.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    settings.TRACING_EXPORTER = "otlp"
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = "http://127.0.0.1:4318"
    tracing.reset()
    try:
        with caplog.at_level(logging.WARNING, logger="mlops.observability.tracing"):
            assert not tracing.enabled()
        assert "not installed" in caplog.text and "tracing stays off" in caplog.text
    finally:
        tracing.reset()


def test_the_console_exporter_builds_an_sdk_provider_with_the_service_name(settings):
    settings.SERVICE_NAME = "mlops-web"
    settings.TRACING_SAMPLE_RATIO = 0.5
    provider = tracing._sdk_provider("console", settings)
    try:
        assert provider.resource.attributes["service.name"] == "mlops-web"
        assert "0.5" in provider.sampler.get_description()
    finally:
        provider.shutdown()


def test_an_unknown_exporter_is_refused(settings):
    with pytest.raises(ValueError, match="not one of"):
        tracing._sdk_provider("zipkin", settings)


def test_the_documented_span_names():
    assert set(tracing.SPAN_NAMES) == {
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
    }
