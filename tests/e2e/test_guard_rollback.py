"""A canary that errs is rolled back end to end: real gunicorn, its in-process rollout guard, real
requests. The canary is an ONNX model that fails on every real row (tests/onnx_models.py), so each
of its attempts fails over to production; the guard's sequential test shows the error rate above
its limit and stops the canary, and production answers everything from then on."""

import http.client
import json
import time

import pytest
from sklearn.datasets import load_breast_cancer

from audit.models import PredictionLog
from mlops import selectors, services
from mlops.demo import demo_feature_names
from mlops.models import CanaryConfig, RollbackEvent
from tests import servers
from tests.onnx_models import build_failing_model

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PRODUCT = "fraud_score"


def infer(port: int, key: str, event_id: str, features: dict) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"product": PRODUCT, "event_id": event_id, "features": features})
    connection.request("POST", "/v1/infer", body=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    assert response.status == 200, payload
    return payload


def wait_until(condition, *, within: float, what: str):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # polling an observable fact, with a deadline
    pytest.fail(f"{what} within {within:g} s")


def test_a_failing_canary_is_rolled_back_by_the_guard_of_a_real_server(production_model, local_store, tmp_path):
    failing = services.model_push(
        source=build_failing_model(tmp_path / "failing.onnx"), store=local_store, product=PRODUCT, name="failing", version="1"
    )
    services.model_version_validate(model_version_id=failing.pk, user=None, reason="passes offline checks, fails on real rows")
    services.canary_set(product=PRODUCT, canary_model_id=failing.pk, canary_percent=25, user=None, reason="start")
    _, key = services.api_key_create(client="guard-e2e", role="internal_service")
    names = demo_feature_names()
    rows = [dict(zip(names, map(float, row), strict=True)) for row in load_breast_cancer().data]
    env = {
        **servers.PRODUCTION,
        "RATELIMIT_ENABLE": "0",
        "WEB_CONCURRENCY": "1",
        "ROLLOUT_GUARD_IN_PROCESS": "1",
        "ROLLOUT_GUARD_INTERVAL_SECONDS": "1",
        "SERVING_WORKER_REPORT_SECONDS": "1",
    }
    with servers.start("gunicorn", env=env, log=tmp_path / "server.log") as server:
        wait_until(
            lambda: any(
                w.current and w.route and w.route["canary"] == "failing@1" for w in selectors.serving_workers(product=PRODUCT).workers
            ),
            within=30,
            what="the worker never served the canary",
        )
        started, sent, roles = time.monotonic(), 0, set()
        while CanaryConfig.objects.get(product=PRODUCT).canary_basis_points:
            answer = infer(server.port, key, f"evt-{sent}", rows[sent % len(rows)])
            roles.add(answer["model_role"])
            sent += 1
            assert time.monotonic() - started < 60, f"not rolled back after {sent} requests:\n{server.output()}"
        seconds = time.monotonic() - started

        event = RollbackEvent.objects.get(product=PRODUCT)
        print(f"\nfailing canary at 25%: rolled back {seconds:.1f} s after the first request, after {sent} requests")
        assert (event.reason, event.model_version_id, event.canary_basis_points) == ("high_error_rate", failing.pk, 2500)
        measured = event.measured
        assert measured["metric"] == "error_rate" and measured["statistic"]["count"] == measured["statistic"]["total"] > 0
        assert measured["p_value"] < 0.025 and measured["interval"]["low"] > 0.05
        assert measured["samples"]["production"] > 0
        assert roles == {"production"}  # the failing canary never answered: every attempt failed over
        assert PredictionLog.objects.filter(product=PRODUCT, fallback_from=failing.pk).count() >= measured["statistic"]["count"]

        # Once the worker has the new configuration no request reaches the canary any more.
        wait_until(
            lambda: all(w.current and w.route and w.route["canary"] is None for w in selectors.serving_workers(product=PRODUCT).workers),
            within=30,
            what="the worker never dropped the canary",
        )
        after = PredictionLog.objects.filter(product=PRODUCT, fallback_from=failing.pk).count()
        for n in range(40):
            infer(server.port, key, f"after-{n}", rows[n])
        wait_until(
            lambda: PredictionLog.objects.filter(product=PRODUCT, event_id__startswith="after-").count() == 40,
            within=10,
            what="the log never recorded the 40 requests",
        )
        assert PredictionLog.objects.filter(product=PRODUCT, fallback_from=failing.pk).count() == after
