"""The spans the platform's code emits, with the attributes an operator filters by (in-memory exporter)."""

import orjson
import pytest
from django.test import Client
from opentelemetry.trace import StatusCode

from audit import writer
from inference import shadow
from inference.runtime import runtime
from mlops import services as registry
from mlops.demo import PRODUCT
from mlops.security import authentication
from tests.conftest import infer

pytestmark = pytest.mark.django_db(transaction=True)


def _named(exporter, name: str) -> list:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def _attributes(span) -> dict:
    return {key.removeprefix("mlops."): value for key, value in span.attributes.items()}


def test_loading_a_model_is_a_model_load_span(spans, inference_state, production_model):
    runtime.refresh()
    [load] = _named(spans, "model_load")
    assert _attributes(load) == {
        "product": PRODUCT,
        "model_id": str(production_model.pk),
        "model_name": production_model.name,
        "model_version": production_model.version,
    }
    assert load.status.status_code != StatusCode.ERROR


def test_a_prediction_is_model_inference_inside_api_key_validation_and_rate_limit_spans(spans, serving, features, settings):
    settings.RATELIMIT_ENABLE = True
    _, key = registry.api_key_create(client="span-tests", role="inference_client")
    authentication.api_keys.invalidate()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert infer(client, features, event_id="span-1").status_code == 200
    assert infer(client, features, event_id="span-2").status_code == 200  # the same features: a cache hit

    first, second = _named(spans, "model_inference")
    assert _attributes(first) == {
        "product": PRODUCT,
        "model_id": str(serving.pk),
        "model_name": serving.name,
        "model_version": serving.version,
        "rows": 1,
        "cache": "miss",
    }
    assert _attributes(second)["cache"] == "hit"
    validations = _named(spans, "api_key_validation")
    assert len(validations) == 2 and _attributes(validations[0]) == {"key_prefix": key.split(".")[0].removeprefix("mlk_")}
    checks = _named(spans, "rate_limit_check")
    assert len(checks) == 2 and _attributes(checks[0]) == {"group": "predict", "principal_kind": "api_key", "windows": 2}


def test_a_refused_key_is_a_failed_api_key_validation_span(spans, serving, features):
    client = Client(HTTP_AUTHORIZATION="Bearer mlk_nosuchkey.secret")
    assert infer(client, features).status_code == 401
    [validation] = _named(spans, "api_key_validation")
    assert validation.status.status_code == StatusCode.ERROR
    assert _attributes(validation) == {"key_prefix": "nosuchkey"}


def test_a_batch_is_one_model_inference_span_with_its_row_count(spans, api, serving, features):
    first = next(iter(features))  # three different rows: three cache misses
    items = [{"event_id": f"b{i}", "product": PRODUCT, "features": {**features, first: features[first] * (1 + i / 100)}} for i in range(3)]
    response = api.post("/v1/infer/batch", orjson.dumps({"items": items}), content_type="application/json")
    assert response.status_code == 200, response.content
    [batch] = _named(spans, "model_inference")
    assert _attributes(batch)["rows"] == 3 and _attributes(batch)["misses"] == 3


def test_a_shadow_run_is_a_shadow_inference_span_and_each_row_a_diff_classification(spans, api, serving, features, push_demo):
    gbdt = push_demo("gbdt")
    registry.model_version_validate(model_version_id=gbdt.pk, user=None, reason="test")
    registry.shadow_enable(product=PRODUCT, shadow_model_id=gbdt.pk, sample_percent=100, user=None, reason="test")
    runtime.refresh()
    assert infer(api, features, event_id="shadowed").status_code == 200
    shadow.reset(wait=True)
    writer.flush(10)
    [run] = _named(spans, "shadow_inference")
    assert _attributes(run) == {"product": PRODUCT, "model_id": str(gbdt.pk), "model_name": "gbdt", "model_version": "1", "rows": 1}
    [diff] = _named(spans, "diff_classification")
    attributes = _attributes(diff)
    assert attributes["product"] == PRODUCT and attributes["model_id"] == str(gbdt.pk)
    assert attributes["diff_class"] in {"minimal", "moderate", "significant"} and attributes["score_diff"] >= 0


def test_posting_outcomes_is_an_outcome_ingestion_span(spans, api):
    outcomes = [{"product": PRODUCT, "event_id": f"o{i}", "label": bool(i % 2)} for i in range(3)]
    response = api.post("/v1/outcomes", orjson.dumps(outcomes), content_type="application/json")
    assert response.status_code == 201, response.content
    [ingestion] = _named(spans, "outcome_ingestion")
    assert _attributes(ingestion) == {"source": "api", "count": 3}


def test_shadow_control_is_traced_with_what_changed_and_why(spans, candidate):
    product = candidate.product
    registry.shadow_enable(product=product, shadow_model_id=candidate.pk, sample_percent=25, user=None, reason="try gbdt")
    registry.shadow_disable(product=product, user=None, reason="enough data")
    assert registry.shadow_clear(product=product, user=None, reason="back to the default")
    assert not registry.shadow_clear(product=product, user=None, reason="nothing left")
    [enabled] = _named(spans, "enable_shadow_mode")
    assert _attributes(enabled) == {
        "product": product,
        "shadow_version": f"{candidate.name}@{candidate.version}",
        "sample_basis_points": 2500,
        "reason": "try gbdt",
    }
    [disabled] = _named(spans, "disable_shadow_mode")
    previous = f"{candidate.name}@{candidate.version}"
    assert _attributes(disabled) == {"product": product, "reason": "enough data", "previous_shadow": previous}
    cleared, nothing = _named(spans, "clear_runtime_override")
    assert _attributes(cleared) == {"product": product, "reason": "back to the default", "reverted_to_env": True}
    assert _attributes(nothing)["reverted_to_env"] is False


def test_a_refused_shadow_change_is_a_failed_span(spans, production_model):
    with pytest.raises(registry.LifecycleError):
        registry.shadow_enable(product=PRODUCT, shadow_model_id=production_model.pk, user=None, reason="oops")
    [refused] = _named(spans, "enable_shadow_mode")
    assert refused.status.status_code == StatusCode.ERROR
