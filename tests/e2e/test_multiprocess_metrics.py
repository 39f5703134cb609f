"""The metrics page of a real multi-worker `web` server: the workers' counts summed, promtool-clean."""

import subprocess

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


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
    from tests.e2e.web_server import start_web

    _, key = api_key_create(client="multiprocess-metrics", role="internal_service")
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    server = start_web(
        tmp_path,
        port,
        os.environ.get("REDIS_URL", ""),
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        RATELIMIT_ENABLE="0",
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
