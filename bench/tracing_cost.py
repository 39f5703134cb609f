"""Cost of one `mlops.observability.tracing.span` per call: off (the default), and on with the SDK recording.

    .venv/bin/python bench/tracing_cost.py [--calls N]

"off" is what every request pays when no exporter is configured; "on" uses the SDK with an
in-memory exporter (no network), so it is the floor of what a configured process pays.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")
os.environ.setdefault("TRACING_EXPORTER", "")


def per_call_us(function, calls: int) -> float:
    best = float("inf")
    for _ in range(5):  # best of five: the machine's noise only ever adds
        start = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls

    import django

    django.setup()
    from mlops.observability import tracing

    def empty():
        pass

    def traced():
        with tracing.span("model_inference", product="fraud_score", model_id="42", role="production") as s:
            s.set(decision="allow")

    baseline = per_call_us(empty, calls)
    tracing.reset()
    assert not tracing.enabled(), "tracing is configured in this environment; unset TRACING_EXPORTER"
    off = per_call_us(traced, calls) - baseline
    print(f"span off (no exporter): {off:.3f} us per span")

    # For comparison: the OpenTelemetry API's own no-op path (what `span` avoids when off).
    from opentelemetry import trace

    api_tracer = trace.get_tracer("bench")

    def api_noop():
        with api_tracer.start_as_current_span("model_inference", attributes={"mlops.product": "fraud_score"}) as s:
            s.set_attribute("mlops.decision", "allow")

    print(f"OpenTelemetry API no-op span, for comparison: {per_call_us(api_noop, calls // 4) - baseline:.3f} us per span")

    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        print("span on: opentelemetry-sdk not installed, skipped")
        return
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)

    def traced_and_cleared():
        traced()
        exporter.clear()

    on = per_call_us(traced_and_cleared, max(calls // 20, 1000)) - baseline
    print(f"span on (SDK, in-memory exporter): {on:.3f} us per span")
    tracing.reset()


if __name__ == "__main__":
    main()
