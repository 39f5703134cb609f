# ruff: noqa: E501  (PromQL reads best on one line)
"""Builds ops/grafana/dashboard.json (Grafana 10+, Prometheus data source): `python3 ops/grafana/build_dashboard.py`.

Edit the panels here rather than the JSON; tests/ops checks that every metric the JSON queries exists.
"""

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
panels = []
y = 0
pid = 0


def row(title):
    global y, pid
    pid += 1
    panels.append(
        {"type": "row", "title": title, "id": pid, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
    )
    y += 1


def ts(title, targets, x, w=12, h=8, unit="short", description="", stack=False, kind="timeseries"):
    global pid
    pid += 1
    panel = {
        "type": kind,
        "title": title,
        "id": pid,
        "datasource": DS,
        "description": description,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": unit, "custom": {"stacking": {"mode": "normal" if stack else "none"}}}
            if kind == "timeseries"
            else {"unit": unit},
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
            "tooltip": {"mode": "multi"},
        }
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [
            {"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend} for i, (expr, legend) in enumerate(targets)
        ],
    }
    panels.append(panel)


P = 'product=~"$product"'
row("Traffic")
ts(
    "Requests/s",
    [(f"sum(rate(mlops_inference_requests_total{{{P}}}[$__rate_interval]))", "predictions/s")],
    0,
    w=6,
    h=6,
    unit="reqps",
    kind="stat",
)
ts(
    "Error rate",
    [
        (
            f'sum(rate(mlops_inference_prediction_errors_total{{{P},role=~"production|canary"}}[$__rate_interval])) / sum(rate(mlops_inference_requests_total{{{P}}}[$__rate_interval]))',
            "errors / predictions",
        )
    ],
    6,
    w=6,
    h=6,
    unit="percentunit",
    kind="stat",
    description="Failed model runs of production and canary per answered prediction (alert: > 1% for 5 m).",
)
ts(
    "p95 latency",
    [(f"histogram_quantile(0.95, sum by (le) (rate(mlops_inference_latency_seconds_bucket{{{P}}}[$__rate_interval])))", "p95")],
    12,
    w=6,
    h=6,
    unit="s",
    kind="stat",
    description="Alert: > 100 ms for 5 m.",
)
ts(
    "Models loaded (min over instances)",
    [("min(mlops_inference_models_loaded)", "models")],
    18,
    w=6,
    h=6,
    kind="stat",
    description="0 on any instance fires MLOpsNoModelsLoaded.",
)
y += 6
ts(
    "Requests/s by product and role",
    [(f"sum by (product, role) (rate(mlops_inference_requests_total{{{P}}}[$__rate_interval]))", "{{product}} {{role}}")],
    0,
    unit="reqps",
    stack=True,
)
ts(
    "Latency p50 / p95 / p99",
    [
        (
            f"histogram_quantile({q}, sum by (le) (rate(mlops_inference_latency_seconds_bucket{{{P}}}[$__rate_interval])))",
            f"p{int(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ],
    12,
    unit="s",
)
y += 8
ts(
    "Errors/s by model and type",
    [
        (
            f"sum by (model, role, type) (rate(mlops_inference_prediction_errors_total{{{P}}}[$__rate_interval]))",
            "{{model}} {{role}} {{type}}",
        ),
        ("sum by (reason) (rate(mlops_inference_invalid_inputs_total[$__rate_interval]))", "invalid input: {{reason}}"),
    ],
    0,
    unit="reqps",
)
ts(
    "HTTP responses/s of the API by status",
    [
        (
            'sum by (status) (rate(django_http_responses_total_by_status_view_method_total{view=~"infer.*|prediction-detail|models|outcomes|audit-.*|canary-.*|shadow-.*|rollbacks"}[$__rate_interval]))',
            "{{status}}",
        )
    ],
    12,
    unit="reqps",
    stack=True,
)
y += 8
row("Rollout: canary vs production")
ts(
    "Canary share: configured vs served",
    [
        (f"max by (product) (mlops_inference_canary_ratio{{{P}}})", "configured {{product}}"),
        (
            f'sum by (product) (rate(mlops_inference_requests_total{{{P},role="canary"}}[$__rate_interval])) / sum by (product) (rate(mlops_inference_requests_total{{{P}}}[$__rate_interval]))',
            "served {{product}}",
        ),
    ],
    0,
    w=8,
    unit="percentunit",
)
ts(
    "p95 latency: canary vs production",
    [
        (
            f'histogram_quantile(0.95, sum by (le, product, role) (rate(mlops_inference_latency_seconds_bucket{{{P},role=~"canary|production"}}[$__rate_interval])))',
            "{{product}} {{role}}",
        )
    ],
    8,
    w=8,
    unit="s",
    description="Alert: canary p95 > 1.3 x production for 10 m.",
)
ts(
    "Canary fallbacks and rollbacks",
    [
        (
            f"sum by (product, reason) (rate(mlops_inference_canary_fallbacks_total{{{P}}}[$__rate_interval]))",
            "fallback {{product}} {{reason}}",
        ),
        (f"sum by (product, reason) (increase(mlops_rollout_rollbacks_total{{{P}}}[$__range]))", "rollbacks {{product}} {{reason}}"),
        ("sum by (result) (rate(mlops_rollout_guard_evaluations_total[$__rate_interval]))", "guard {{result}}"),
    ],
    16,
    w=8,
)
y += 8
ts(
    "Decisions/s by product",
    [(f"sum by (product, decision) (rate(mlops_inference_requests_total{{{P}}}[$__rate_interval]))", "{{product}} {{decision}}")],
    0,
    w=8,
    unit="reqps",
    stack=True,
)
ts(
    "Cache hit rate",
    [
        (
            f'sum by (product) (rate(mlops_inference_cache_total{{{P},result=~"hit|shared_hit"}}[$__rate_interval])) / sum by (product) (rate(mlops_inference_cache_total{{{P}}}[$__rate_interval]))',
            "{{product}}",
        )
    ],
    8,
    w=8,
    unit="percentunit",
)
ts(
    "Shadow runs by outcome, and skips (pool full)",
    [
        (f"sum by (product, outcome) (rate(mlops_inference_shadow_runs_total{{{P}}}[$__rate_interval]))", "{{product}} {{outcome}}"),
        (f"sum by (product) (rate(mlops_inference_shadow_skips_total{{{P}}}[$__rate_interval]))", "{{product}} skipped"),
    ],
    16,
    w=8,
    unit="reqps",
    description="A shadow runs off the request path; skipped runs mean the shadow pool is full (INFERENCE_SHADOW_WORKERS/QUEUE).",
)
y += 8
ts(
    "Shadow diff classes",
    [
        (
            f"sum by (product, model, diff_class) (rate(mlops_inference_shadow_diffs_total{{{P}}}[$__rate_interval]))",
            "{{product}} {{model}} {{diff_class}}",
        )
    ],
    0,
    unit="reqps",
    stack=True,
    description="Shadow answers by |primary score - shadow score|: minimal, moderate (>= SHADOW_DIFF_MODERATE), significant (>= SHADOW_DIFF_SIGNIFICANT).",
)
ts(
    "Shadow decision disagreement",
    [
        (
            f"sum by (product, model) (rate(mlops_inference_shadow_disagreements_total{{{P}}}[$__rate_interval])) / sum by (product, model) (rate(mlops_inference_shadow_diffs_total{{{P}}}[$__rate_interval]))",
            "{{product}} {{model}}",
        )
    ],
    12,
    unit="percentunit",
    description="Share of shadow answers whose decision (block / review / allow) differs from the answer the client got.",
)
y += 8
row("Prediction log writer")
ts("Writer queue depth", [("sum by (instance) (audit_log_queue_depth)", "{{instance}}")], 0, w=8)
ts(
    "Records/s: queued, written, spilled, replayed",
    [
        ("sum(rate(audit_log_queued_total[$__rate_interval]))", "queued"),
        ("sum(rate(audit_log_written_total[$__rate_interval]))", "written"),
        ("sum by (reason) (rate(audit_log_spilled_total[$__rate_interval]))", "spilled {{reason}}"),
        ("sum(rate(audit_log_replayed_total[$__rate_interval]))", "replayed"),
    ],
    8,
    w=8,
    unit="reqps",
    description="Spilling fires MLOpsPredictionLogSpilling.",
)
ts(
    "Lost and rejected records; batch write p95",
    [
        ("sum by (reason) (increase(audit_log_dropped_total[$__range]))", "dropped {{reason}}"),
        ("sum(increase(audit_log_rejected_total[$__range]))", "rejected"),
        ("histogram_quantile(0.95, sum by (le) (rate(audit_log_write_seconds_bucket[$__rate_interval])))", "write p95 (s)"),
    ],
    16,
    w=8,
)
y += 8
row("Streams (stream process)")
ts(
    "Dual-model streams/s by outcome",
    [
        ("sum by (product, outcome) (rate(mlops_stream_dual_streams_total[$__rate_interval]))", "{{product}} {{outcome}}"),
        ("sum by (product) (rate(mlops_stream_dual_disconnects_total[$__rate_interval]))", "{{product}} client left"),
    ],
    0,
    w=8,
    unit="reqps",
)
ts(
    "Dual-model run p95 by part",
    [
        (
            "histogram_quantile(0.95, sum by (le, product, part) (rate(mlops_stream_dual_latency_seconds_bucket[$__rate_interval])))",
            "{{product}} {{part}}",
        ),
        ("sum by (product, part) (rate(mlops_stream_dual_timeouts_total[$__rate_interval]))", "timeouts/s {{product}} {{part}}"),
    ],
    8,
    w=8,
    unit="s",
)
ts(
    "Live pages: subscribers and events",
    [
        ("sum(mlops_stream_live_subscribers)", "subscribers"),
        ("sum by (result) (rate(mlops_stream_live_events_total[$__rate_interval]))", "events/s {{result}}"),
    ],
    16,
    w=8,
)
y += 8
row("Dependencies")
ts(
    "Circuits: database, model store (0 closed, 1 half-open, 2 open)",
    [("max by (dependency) (mlops_circuit_state)", "{{dependency}}")],
    0,
    w=8,
)
ts(
    "Dependency calls/s (off the request path)",
    [
        ("sum by (dependency, outcome) (rate(mlops_dependency_calls_total[$__rate_interval]))", "{{dependency}} {{outcome}}"),
        ("sum by (dependency) (rate(mlops_dependency_retries_total[$__rate_interval]))", "{{dependency}} retried"),
    ],
    8,
    w=8,
    unit="reqps",
)
ts(
    "Rate limits failing open (cache down)",
    [("sum(rate(mlops_ratelimit_fail_open_total[$__rate_interval]))", "served without a limit check")],
    16,
    w=8,
    unit="reqps",
)
y += 8

dashboard = {
    "title": "MLOps platform: inference, rollouts, prediction log",
    "uid": "mlops-platform",
    "tags": ["mlops", "inference"],
    "timezone": "utc",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "refresh": "30s",
    "time": {"from": "now-1h", "to": "now"},
    "annotations": {"list": []},
    "templating": {
        "list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0},
            {
                "name": "product",
                "label": "Product",
                "type": "query",
                "datasource": DS,
                "query": {"query": "label_values(mlops_inference_requests_total, product)", "refId": "product"},
                "definition": "label_values(mlops_inference_requests_total, product)",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"text": "All", "value": "$__all"},
                "refresh": 2,
            },
        ]
    },
    "panels": panels,
}
with open(Path(__file__).with_name("dashboard.json"), "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
print(f"{len(panels)} panels written")
