"""Archive a serving canary and shadow while two gunicorn workers serve them: once every worker has
the new configuration, neither answers nor shadows a single request."""

import http.client
import json
import signal
import time

import pytest
from django.utils import timezone

from audit.models import PredictionLog
from mlops import selectors, services
from mlops.demo import demo_feature_names
from tests import servers

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def infer(port: int, key: str, event_id: str) -> dict:
    """One POST on a new connection, so that the kernel spreads requests over both workers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"product": "fraud_score", "event_id": event_id, "features": dict.fromkeys(demo_feature_names(), 1.0)})
    connection.request("POST", "/v1/infer", body=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    assert response.status == 200, payload
    return payload


def wait_for_workers(*, count: int, canary: str | None, shadow: str | None, within: float = 15) -> None:
    """Until ``count`` workers report the current generation with this canary and shadow."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        workers = selectors.serving_workers(product="fraud_score").workers
        if len(workers) == count and all(
            w.current and w.route and (w.route["canary"], w.route["shadow"]) == (canary, shadow) for w in workers
        ):
            return
        time.sleep(0.1)  # polling the registry for an observable fact, with a deadline
    pytest.fail(f"workers never reported canary={canary} shadow={shadow}: {workers}")


def test_archived_canary_and_shadow_stop_serving_on_every_worker(production_model, push_demo, tmp_path):
    canary = services.model_version_validate(model_version_id=push_demo("gbdt").pk, user=None, reason="checks")
    shadow = services.model_version_validate(model_version_id=push_demo("logreg", version="2").pk, user=None, reason="checks")
    services.canary_set(product="fraud_score", canary_model_id=canary.pk, canary_percent=50, user=None, reason="start")
    services.shadow_enable(product="fraud_score", shadow_model_id=shadow.pk, user=None, reason="compare")
    _, key = services.api_key_create(client="archive", role="internal_service")
    env = {**servers.PRODUCTION, "RATELIMIT_ENABLE": "0", "WEB_CONCURRENCY": "2", "WEB_THREADS": "2", "SERVING_WORKER_REPORT_SECONDS": "1"}
    server = servers.start("gunicorn", env=env, log=tmp_path / "server.log")
    try:
        wait_for_workers(count=2, canary="gbdt@1", shadow="logreg@2")
        before = [infer(server.port, key, f"before-{n}") for n in range(60)]
        assert {answer["model_role"] for answer in before} == {"production", "canary"}

        result = services.model_version_archive(model_version_id=canary.pk, user=None, reason="worse offline")
        assert result.stopped == ["canary"]
        result = services.model_version_archive(model_version_id=shadow.pk, user=None, reason="done comparing")
        assert result.stopped == ["shadow"]
        wait_for_workers(count=2, canary=None, shadow=None)

        archived_at = timezone.now()
        after = [infer(server.port, key, f"after-{n}") for n in range(200)]
    finally:
        server.stop(signal.SIGTERM, timeout=30)  # the shutdown flush writes every queued row
    assert {answer["model_role"] for answer in after} == {"production"}
    assert {answer["model_id"] for answer in after} == {str(production_model.pk)}
    assert PredictionLog.objects.filter(model_version=shadow, created_at__lt=archived_at).exists()
    assert not PredictionLog.objects.filter(model_version__in=[canary, shadow], created_at__gte=archived_at).exists()
    assert PredictionLog.objects.filter(event_id__startswith="after-", role="production").count() == 200
