"""The metrics page as Prometheus sees it: promtool-clean, and every documented and dashboarded metric on it."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from ops import metrics_table
from tests.conftest import infer

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
