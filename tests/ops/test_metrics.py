"""The metrics page as Prometheus sees it: promtool-clean, and every documented and dashboarded metric on it."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from ops import metrics_table
from tests.ops.conftest import infer

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
_NAME = re.compile(r"\b((?:mlops|audit|django)_[a-z0-9_]+)")


@pytest.fixture
def scrape(api, serving, features) -> str:
    """``/metrics`` after a few predictions (fresh and repeated) through the API.

    Every metric module is imported first: a process exposes the metrics of the code it runs
    (the stream process its stream metrics), and this one page stands for all of them.
    """
    metrics_table.import_modules()
    for index in range(3):
        assert infer(api, features, event_id=f"evt-{index}").status_code == 200
    assert infer(api, features, event_id="evt-0").status_code == 200  # a cache hit
    response = api.get("/metrics")
    assert response.status_code == 200
    return response.content.decode()


def families(text: str) -> dict[str, str]:
    return dict(_TYPE.findall(text))


def test_promtool_check_metrics_passes_on_a_real_scrape(scrape, promtool):
    result = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_documented_metric_is_on_the_page_with_its_type(scrape):
    exposed = families(scrape)
    documented = metrics_table.rows()
    assert documented, "no metrics found"
    # The stream process defines its own metrics; they are on /metrics of a process that imports them.
    missing = {name: kind for name, kind, *_ in documented if exposed.get(name) != kind}
    assert not missing, f"documented but not exposed (or with another type): {missing}"


def test_the_metrics_table_in_the_docs_is_the_generated_one():
    documented = metrics_table.documented_table((ROOT / "docs" / "metrics.md").read_text())
    assert documented == metrics_table.table(), "docs/metrics.md is stale: run .venv/bin/python ops/metrics_table.py --write"


def test_the_platform_exposes_no_undocumented_metric(scrape):
    documented = {name for name, *_ in metrics_table.rows()}
    ours = {name for name in families(scrape) if name.startswith(metrics_table.PREFIXES) and not name.endswith("_created")}
    assert ours <= documented, f"undocumented: {sorted(ours - documented)} (add the module to ops/metrics_table.py MODULES)"


def _queried_names(expressions: list[str], exposed: dict[str, str]) -> set[str]:
    names = set()
    for expression in expressions:
        for name in _NAME.findall(expression):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            names.add(base if exposed.get(base) == "histogram" else name)
    return names


def test_the_dashboard_queries_only_metrics_that_exist(scrape):
    exposed = families(scrape)
    dashboard = json.loads((ROOT / "ops" / "grafana" / "dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    expressions += [variable.get("definition", "") for variable in dashboard["templating"]["list"]]
    assert len(expressions) > 20
    unknown = _queried_names(expressions, exposed) - set(exposed)
    assert not unknown, f"the dashboard queries metrics that do not exist: {sorted(unknown)}"


def test_the_alert_rules_use_only_metrics_that_exist(scrape):
    import yaml

    exposed = families(scrape)
    rules = yaml.safe_load((ROOT / "ops" / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    unknown = _queried_names(expressions, exposed) - set(exposed)
    assert not unknown, f"the alerts query metrics that do not exist: {sorted(unknown)}"


@pytest.mark.e2e
def test_promtool_accepts_the_aggregated_page_of_a_multi_worker_server(production_model, promtool, tmp_path):
    """Production mode: two gunicorn workers writing to PROMETHEUS_MULTIPROC_DIR, /metrics summing them."""
    import os
    import urllib.request

    import orjson
    from sklearn.datasets import load_breast_cancer

    from mlops.demo import demo_feature_names
    from mlops.services import api_key_create
    from tests.conftest import free_port
    from tests.ops.servers import start_web

    _, key = api_key_create(client="multiprocess-metrics", role="internal_service")
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    server = start_web(
        tmp_path, port, os.environ.get("REDIS_URL", ""), WEB_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), RATELIMIT_ENABLE="0"
    )
    try:
        row = load_breast_cancer().data[0]
        features = {name: float(value) for name, value in zip(demo_feature_names(), row, strict=True)}
        for index in range(6):  # a fresh connection each: both workers get some
            body = orjson.dumps({"event_id": f"mp-{index}", "product": "fraud_score", "features": features})
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/infer",
                data=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            page = response.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert any(path.name.startswith("counter_") for path in metrics_dir.iterdir()), "the workers wrote no multiprocess files"
    result = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    requests = sum(float(line.split()[-1]) for line in page.splitlines() if line.startswith("mlops_inference_requests_total{"))
    assert requests == 6
