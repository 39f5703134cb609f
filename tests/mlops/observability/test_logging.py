"""Log lines: JSON with the prediction fields in production, readable in the embedded default."""

import io
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.observability.logging import ContextFilter, HumanFormatter, JsonFormatter, log_context

ROOT = Path(__file__).resolve().parents[3]


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"tests.mlops.observability.logging.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_timestamp_level_message_and_the_bound_prediction_fields():
    logger, stream = _logger(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    with log_context(prediction_id="p-1", event_id="e-1", model="fraud_score/logreg@1", role="canary"):
        logger.info("answered %s", "e-1", extra={"latency_ms": 1.23456})
    line = json.loads(stream.getvalue())
    assert line["level"] == "INFO" and line["message"] == "answered e-1"
    assert line["timestamp"].endswith("+00:00")
    assert {key: line[key] for key in ("prediction_id", "event_id", "model", "role")} == {
        "prediction_id": "p-1",
        "event_id": "e-1",
        "model": "fraud_score/logreg@1",
        "role": "canary",
    }
    assert line["latency_ms"] == 1.235


def test_fields_are_absent_when_not_bound_and_do_not_leak_out_of_the_block():
    logger, stream = _logger(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    with log_context(prediction_id="p-1"):
        pass
    logger.warning("no prediction here")
    line = json.loads(stream.getvalue())
    assert "prediction_id" not in line and line["level"] == "WARNING"


def test_a_traceback_stays_inside_the_json_line():
    logger, stream = _logger(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 1 and "ValueError: bad" in json.loads(lines[0])["exc_info"]


def test_human_lines_append_the_fields_people_filter_by():
    logger, stream = _logger(HumanFormatter("%(levelname)s %(name)s %(message)s"))
    with log_context(prediction_id="p-1", role="production"):
        logger.info("answered", extra={"latency_ms": 2.5})
    assert stream.getvalue().strip().endswith("answered [prediction_id=p-1 role=production latency_ms=2.5]")


def _configured(env: dict, expression: str) -> str:
    """``expression`` evaluated in a fresh process configured by ``env``, as printed."""
    return _run(env, f"print({expression})").stdout.strip()


def _configured_stderr(env: dict, statement: str) -> str:
    """What ``statement`` logs in a fresh process configured by ``env``: its last line on stderr."""
    return _run(env, statement).stderr.strip().splitlines()[-1]


def _run(env: dict, statement: str) -> subprocess.CompletedProcess:
    code = f"import django, logging; django.setup(); from django.conf import settings; {statement}"
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ("LOG_FORMAT", "DEBUG", "DJANGO_SETTINGS_MODULE", "OTEL_SERVICE_NAME", "POD_NAME")
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "DJANGO_SETTINGS_MODULE": "mlops.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "human"),  # the embedded default
        ({"DEBUG": "0", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "mlops.example"}, "json"),  # production
        ({"LOG_FORMAT": "json"}, "json"),
        ({"DEBUG": "0", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "mlops.example", "LOG_FORMAT": "human"}, "human"),
    ],
)
def test_log_format_follows_debug_unless_set(env, expected):
    assert _configured(env, "settings.LOGGING['handlers']['console']['formatter']") == expected


@pytest.mark.parametrize(("env", "expected"), [({}, "False"), ({"LOG_PREDICTIONS": "true"}, "True")])
def test_a_line_per_answered_prediction_only_when_asked_for(env, expected):
    assert _configured(env, "logging.getLogger('inference.answers').isEnabledFor(logging.INFO)") == expected


def test_a_line_logged_inside_a_recording_span_carries_its_trace_and_span_ids():
    from opentelemetry.sdk.trace import TracerProvider

    from mlops.observability import tracing

    logger, stream = _logger(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    tracing.configure(TracerProvider())
    try:
        with tracing.span("model_inference"):
            logger.warning("slow run")
        logger.warning("outside")
    finally:
        tracing.reset()
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert len(inside["trace_id"]) == 32 and len(inside["span_id"]) == 16
    assert "trace_id" not in outside


@pytest.mark.parametrize(
    ("env", "service", "host"),
    [
        ({"OTEL_SERVICE_NAME": "mlops-web", "POD_NAME": "web-5d7c9b-xyz"}, "mlops-web", "web-5d7c9b-xyz"),  # in Kubernetes
        ({}, "mlops", socket.gethostname()),
    ],
)
def test_every_json_line_says_which_service_and_host_wrote_it(env, service, host):
    line = _configured_stderr({"LOG_FORMAT": "json", **env}, "logging.getLogger('mlops.check').warning('hello')")
    record = json.loads(line)
    assert (record["message"], record["service"], record["host"]) == ("hello", service, host)
