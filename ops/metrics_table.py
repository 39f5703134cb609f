"""The table of the platform's Prometheus metrics in docs/metrics.md, generated from the code.

    .venv/bin/python ops/metrics_table.py           # print the table
    .venv/bin/python ops/metrics_table.py --write   # rewrite it in docs/metrics.md

Every module that defines metrics is imported and each of its collectors listed with the name
it is exposed under, its type, labels and help text. ``tests/ops/test_metrics.py`` fails when
the table in the docs differs from this output (a metric was added, renamed or relabelled
without the docs) and when a documented metric is missing from a real ``/metrics`` scrape.
"""

import argparse
import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "metrics.md"
START, END = "<!-- metrics-table:start -->", "<!-- metrics-table:end -->"

# module -> what it measures; the order of the table.
MODULES = {
    "inference.metrics": "serving path",
    "audit.metrics": "prediction log writer",
    "audit.guard.metrics": "rollout guard",
    "audit.drift.metrics": "drift (the rollout guard's process)",
    "mlops.security.ratelimits": "rate limits",
    "mlops.background.resilience": "dependencies (database, S3, shared cache)",
    "inference.streams.metrics": "streams (stream process)",
    "inference.lane.endpoints": "hot lane (infer process)",
}
PREFIXES = ("mlops_", "audit_")


def _exposed_name(metric) -> str:
    # prometheus_client keeps a counter's name without "_total" and adds it on exposition.
    return f"{metric._name}_total" if metric._type == "counter" else metric._name


def import_modules() -> dict:
    """The metric modules that exist in this checkout, imported (which registers their metrics)."""
    modules = {}
    for module_name in MODULES:
        try:
            modules[module_name] = importlib.import_module(module_name)
        except ImportError:
            continue
    return modules


def rows() -> list[tuple[str, str, str, str, str]]:
    """(name, type, labels, area, help) of every metric of the platform, in table order."""
    from prometheus_client import REGISTRY
    from prometheus_client.metrics import MetricWrapperBase

    out = []
    seen = set()
    for module_name, module in import_modules().items():
        area = MODULES[module_name]
        metrics = [value for value in vars(module).values() if isinstance(value, MetricWrapperBase)]
        registered = set(REGISTRY._collector_to_names)  # only what /metrics really exposes
        for metric in sorted((m for m in metrics if m in registered), key=_exposed_name):
            name = _exposed_name(metric)
            if not name.startswith(PREFIXES) or name in seen:
                continue
            seen.add(name)
            labels = ", ".join(f"`{label}`" for label in metric._labelnames) or "–"
            out.append((name, metric._type, labels, area, " ".join(metric._documentation.split())))
    return out


def table() -> str:
    lines = ["| Metric | Type | Labels | Area | Meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {labels} | {area} | {text.replace('|', '/')} |" for name, kind, labels, area, text in rows()]
    return "\n".join(lines)


def documented_table(text: str) -> str:
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {DOC.relative_to(ROOT)}")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")
    import django

    django.setup()
    generated = table()
    if not args.write:
        print(generated)
        return
    text = DOC.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{START}\n{generated}\n{END}{tail}")
    print(f"wrote {len(rows())} metrics to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
