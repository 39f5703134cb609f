"""The runtime registry: loading, readiness, hot swap, refused artifacts, configuration changes."""

import threading
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings
from prometheus_client import REGISTRY

from inference import selectors, services
from inference.runtime import runtime
from inference.validation import InvalidInput
from mlops import services as registry
from mlops.demo import PRODUCT

pytestmark = pytest.mark.django_db(transaction=True)


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_not_ready_before_the_first_load_and_ready_after(production_model):
    assert selectors.readiness()[0] is False
    runtime.refresh()
    ready, body = selectors.readiness()
    assert ready is True and body["status"] == "ready"


def test_models_are_warmed_and_listed_with_their_role(serving, validated):
    gbdt = validated("gbdt")
    registry.canary_set(product=PRODUCT, canary_model_id=gbdt.pk, canary_percent=10, user=None, reason="test")
    runtime.refresh()
    listed = {(entry["name"], entry["role"]) for entry in selectors.serving_models()["models"]}
    assert listed == {("logreg", "production"), ("gbdt", "canary")}
    assert _sample("mlops_inference_models_loaded") == 2
    assert _sample("mlops_inference_canary_ratio", product=PRODUCT) == 0.1


def test_unknown_product_is_refused_and_a_product_being_loaded_is_unavailable(serving, events):
    with pytest.raises(InvalidInput) as refused:
        services.predict(event_id="e", product="nope", features=events[0])
    assert "product" in refused.value.fields


def test_hot_swap_under_concurrent_requests_fails_no_request(serving, validated, events):
    gbdt = validated("gbdt")
    failures: list[BaseException] = []
    served: Counter[str] = Counter()  # answers per model
    answered = threading.Condition()
    stop = threading.Event()

    def hammer(worker: int):
        i = 0
        while not stop.is_set():
            try:
                prediction = services.predict(event_id=f"w{worker}-{i}", product=PRODUCT, features=events[(worker * 50 + i) % len(events)])
                with answered:
                    served[prediction.model.spec.name] += 1
                    answered.notify_all()
            except BaseException as exc:
                failures.append(exc)
            i += 1

    def keep_serving(name: str, requests: int = 100) -> None:
        """Wait until ``requests`` more answers came from ``name``: the swap happens under load."""
        with answered:
            target = served[name] + requests
            assert answered.wait_for(lambda: served[name] >= target or failures, timeout=20), f"{name} answered {served[name]}"

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        keep_serving("logreg")
        registry.model_version_promote(model_version_id=gbdt.pk, user=None, reason="swap")
        runtime.refresh()
        keep_serving("gbdt")
        registry.model_version_rollback(product=PRODUCT, user=None, reason="swap back")
        runtime.refresh()
        keep_serving("logreg")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert set(served) == {"logreg", "gbdt"}
    assert runtime.peek().routes[PRODUCT].production.spec.name == "logreg"


def _store_path(model_version) -> Path:
    return Path(urlparse(model_version.artifact_uri).path)


def _cache_path(model_version) -> Path:
    return Path(settings.MODEL_CACHE_DIR) / f"{model_version.sha256}.onnx"


def test_tampered_artifact_is_refused_and_the_previous_version_keeps_serving(serving, validated, events):
    gbdt = validated("gbdt")
    for path in (_store_path(gbdt), _cache_path(gbdt)):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    refused_before = _sample("mlops_inference_model_loads_total", product=PRODUCT, model="gbdt@1", outcome="refused")
    registry.model_version_promote(model_version_id=gbdt.pk, user=None, reason="tampered")
    snapshot = runtime.refresh()

    assert snapshot.routes[PRODUCT].production.id == str(serving.pk)
    assert "checksum" in snapshot.refused[str(gbdt.pk)].reason
    assert _sample("mlops_inference_model_loads_total", product=PRODUCT, model="gbdt@1", outcome="refused") == refused_before + 1
    assert services.predict(event_id="e1", product=PRODUCT, features=events[0]).model.id == str(serving.pk)
    assert selectors.readiness()[0] is True  # still serving; the refusal is reported in /v1/models
    assert [entry["model_id"] for entry in selectors.serving_models()["refused"]] == [str(gbdt.pk)]


def test_tampered_cached_copy_is_fetched_again_from_the_store(serving, validated):
    gbdt = validated("gbdt")
    _cache_path(gbdt).write_bytes(b"not an onnx model")
    registry.model_version_promote(model_version_id=gbdt.pk, user=None, reason="cache tampered")
    snapshot = runtime.refresh()
    assert snapshot.routes[PRODUCT].production.id == str(gbdt.pk)
    assert _cache_path(gbdt).read_bytes() == _store_path(gbdt).read_bytes()


def test_a_model_whose_warm_up_fails_is_refused_and_production_keeps_serving(serving, push_misbehaving, events):
    broken = push_misbehaving("broken")
    registry.model_version_promote(model_version_id=broken.pk, user=None, reason="broken graph")
    snapshot = runtime.refresh()
    assert snapshot.routes[PRODUCT].production.id == str(serving.pk)
    assert snapshot.refused[str(broken.pk)].reason.startswith(("warm-up", "graph"))
    assert services.predict(event_id="e1", product=PRODUCT, features=events[0]).model.id == str(serving.pk)


def test_a_first_production_that_cannot_load_leaves_the_process_not_ready(push_misbehaving):
    broken = push_misbehaving("broken")
    registry.model_version_promote(model_version_id=broken.pk, user=None, reason="broken graph")
    runtime.refresh()
    ready, body = selectors.readiness()
    assert ready is False and body["missing"] == [PRODUCT]
    with pytest.raises(services.ServiceUnavailable):
        services.predict(event_id="e1", product=PRODUCT, features={})


def test_workers_see_a_configuration_change_within_two_seconds(production_model, validated, settings):
    settings.INFERENCE_BACKGROUND_REFRESH = True
    settings.INFERENCE_GENERATION_POLL_SECONDS = 0.1
    snapshot = runtime.snapshot()  # starts the refresher and waits for its first load
    assert snapshot is not None and snapshot.routes[PRODUCT].production.spec.name == "logreg"
    gbdt = validated("gbdt")
    registry.model_version_promote(model_version_id=gbdt.pk, user=None, reason="bump")  # bumps the generation on commit
    # Checked again after every rebuild of the refresher (its state is set to "loaded" each time).
    assert runtime.process.wait_until(lambda: runtime.peek().routes[PRODUCT].production.spec.name == "gbdt", timeout=2.0)
