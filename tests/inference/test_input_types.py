"""Every model gets the request row in its own input type and feature order.

Logistic regressions whose graphs take float32, float64 or int64 inputs (one of them with its
features in reverse order), trained on scikit-learn's breast-cancer data scaled to whole
numbers, serve as production, canary, shadow and dual-model fast/full. Each answer is compared
with the model's own onnxruntime run on the event in its own type; a value an integer model
cannot take unchanged is refused (400 naming the feature) whichever model the event reaches.
"""

import numpy as np
import onnxruntime as ort
import orjson
import pytest
from django.test import Client
from prometheus_client import REGISTRY
from sklearn.datasets import load_breast_cancer

from audit import writer
from audit.models import PredictionLog
from inference import routing, shadow
from inference.runtime import runtime
from inference.streams.dual_models import dual_models
from inference.streams.recorder import recorder
from mlops import services as registry
from mlops.demo import PRODUCT, demo_feature_names
from mlops.security.authentication import api_keys
from tests.inference.streams.conftest import bearer, body, stream

pytestmark = pytest.mark.django_db(transaction=True)

NAMES = demo_feature_names()
INTEGER_FEATURE = NAMES[3]  # mean_area: what a typo of 1.5 for 2 would look like


@pytest.fixture(scope="session")
def scaled_data() -> tuple[np.ndarray, np.ndarray]:
    """The data set x 100, rounded: whole numbers every model type can take unchanged."""
    features, target = load_breast_cancer(return_X_y=True)
    return np.rint(features * 100), 1 - target


@pytest.fixture(scope="session")
def typed_files(tmp_path_factory, scaled_data) -> dict:
    """``{kind: path}`` for kind in float32, float64, int64 and float64-reversed."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data, target = scaled_data
    folder = tmp_path_factory.mktemp("typed-models")
    kinds = {
        "float32": (FloatTensorType, NAMES),
        "float64": (DoubleTensorType, NAMES),
        "int64": (Int64TensorType, NAMES),
        "float64-reversed": (DoubleTensorType, NAMES[::-1]),
    }
    files = {}
    for kind, (tensor_type, names) in kinds.items():
        columns = [NAMES.index(name) for name in names]
        estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(data[:, columns], target)
        onnx_model = to_onnx(estimator, initial_types=[("X", tensor_type([None, len(names)]))], options={"zipmap": False}, target_opset=17)
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = "feature_names", orjson.dumps(names).decode()
        files[kind] = folder / f"{kind}.onnx"
        files[kind].write_bytes(onnx_model.SerializeToString())
    return files


@pytest.fixture(scope="session")
def events(scaled_data) -> list[dict]:
    """Requests' features as a client sends them: JSON integers."""
    return [{name: int(value) for name, value in zip(NAMES, row, strict=True)} for row in scaled_data[0][:20]]


def expected_score(path, features: dict) -> float:
    """The model's own answer: its graph run directly on the features in its own order and type."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph_input = session.get_inputs()[0]
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}[graph_input.type]
    names = orjson.loads(session.get_modelmeta().custom_metadata_map["feature_names"])
    row = np.array([[features[name] for name in names]], dtype=dtype)
    return float(session.run(["probabilities"], {graph_input.name: row})[0][0, 1])


@pytest.fixture
def register(local_store, typed_files):
    """``register("int64")``: that model registered and validated for ``fraud_score``."""

    def push(kind: str):
        model = registry.model_push(source=typed_files[kind], store=local_store, product=PRODUCT, name=kind, version="1", threshold=0.5)
        return registry.model_version_validate(model_version_id=model.pk, user=None, reason="test")

    return push


@pytest.fixture
def production(register):
    def promote(kind: str):
        return registry.model_version_promote(model_version_id=register(kind).pk, user=None, reason="test")

    return promote


@pytest.fixture
def api(settings):
    settings.RATELIMIT_ENABLE = False
    _, key = registry.api_key_create(client="input-type-tests", role="internal_service")
    api_keys.invalidate()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    def post(path: str, payload: dict):
        response = client.post(path, orjson.dumps(payload), content_type="application/json")
        return response.status_code, orjson.loads(response.content)

    return post


def infer(api, features: dict, event_id: str = "evt-1"):
    return api("/v1/infer", {"event_id": event_id, "product": PRODUCT, "features": features})


def infer_batch(api, events: list[dict], prefix: str = "b"):
    items = [{"event_id": f"{prefix}{i}", "product": PRODUCT, "features": features} for i, features in enumerate(events)]
    return api("/v1/infer/batch", {"items": items})


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- production -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["float32", "float64", "int64"])
def test_a_production_model_answers_in_its_own_input_type(kind, production, api, events, typed_files):
    production(kind)
    runtime.refresh()
    status, answer = infer(api, events[0])
    assert status == 200, answer
    assert answer["model_role"] == "production"
    assert answer["score"] == pytest.approx(expected_score(typed_files[kind], events[0]), rel=1e-6)
    status, answered = infer_batch(api, events[:5])
    assert status == 200, answered
    assert [item["score"] for item in answered["items"]] == pytest.approx(
        [expected_score(typed_files[kind], features) for features in events[:5]], rel=1e-6
    )


# --- canary ---------------------------------------------------------------------------------

CANARY_PAIRS = [("float32", "float64"), ("float32", "int64"), ("int64", "float32"), ("float32", "float64-reversed")]


@pytest.mark.parametrize(("production_kind", "canary_kind"), CANARY_PAIRS)
def test_a_canary_answers_in_its_own_input_type_and_order(production_kind, canary_kind, production, register, api, events, typed_files):
    production(production_kind)
    canary = register(canary_kind)
    registry.canary_set(product=PRODUCT, canary_model_id=canary.pk, canary_percent=100, user=None, reason="test")
    runtime.refresh()
    assert runtime.peek().routes[PRODUCT].canary.id == str(canary.pk)
    fallbacks = _sample("mlops_inference_canary_fallbacks_total", product=PRODUCT, reason="error")

    status, answer = infer(api, events[0])
    assert status == 200, answer
    assert (answer["model_role"], answer["model_id"]) == ("canary", str(canary.pk))
    assert answer["score"] == pytest.approx(expected_score(typed_files[canary_kind], events[0]), rel=1e-6)

    status, answered = infer_batch(api, events[:8])
    assert status == 200, answered
    assert {item["model_role"] for item in answered["items"]} == {"canary"}
    assert [item["score"] for item in answered["items"]] == pytest.approx(
        [expected_score(typed_files[canary_kind], features) for features in events[:8]], rel=1e-6
    )
    assert _sample("mlops_inference_canary_fallbacks_total", product=PRODUCT, reason="error") == fallbacks


# --- shadow ---------------------------------------------------------------------------------

SHADOW_PAIRS = [("float32", "float64"), ("float32", "int64"), ("int64", "float32"), ("float32", "float64-reversed")]


@pytest.mark.parametrize(("production_kind", "shadow_kind"), SHADOW_PAIRS)
def test_a_shadow_scores_in_its_own_input_type_and_order(production_kind, shadow_kind, production, register, api, events, typed_files):
    production(production_kind)
    shadow_model = register(shadow_kind)
    registry.shadow_enable(product=PRODUCT, shadow_model_id=shadow_model.pk, sample_percent=100, user=None, reason="test")
    runtime.refresh()
    label = runtime.peek().routes[PRODUCT].shadow.label
    errors = _sample("mlops_inference_shadow_runs_total", product=PRODUCT, model=label, outcome="error")

    assert infer(api, events[0], event_id="one")[0] == 200
    assert infer_batch(api, events[1:6], prefix="many")[0] == 200
    shadow.reset(wait=True)
    writer.flush(10)

    rows = {row.event_id: row for row in PredictionLog.objects.filter(role="shadow", model_version_id=shadow_model.pk)}
    assert sorted(rows) == sorted(["one", *(f"many{i}" for i in range(5))])
    for event_id, features in [("one", events[0]), *((f"many{i}", events[1 + i]) for i in range(5))]:
        assert rows[event_id].score == pytest.approx(expected_score(typed_files[shadow_kind], features), rel=1e-6)
    assert _sample("mlops_inference_shadow_runs_total", product=PRODUCT, model=label, outcome="error") == errors


def test_a_shadow_never_scores_a_value_its_integer_input_would_truncate(production, register, api, events):
    production("float32")
    shadow_model = register("int64")
    registry.shadow_enable(product=PRODUCT, shadow_model_id=shadow_model.pk, sample_percent=100, user=None, reason="test")
    runtime.refresh()
    label = runtime.peek().routes[PRODUCT].shadow.label
    refused = _sample("mlops_inference_shadow_runs_total", product=PRODUCT, model=label, outcome="invalid_input")
    fractional = {**events[0], INTEGER_FEATURE: events[0][INTEGER_FEATURE] + 0.5}

    status, _ = infer(api, fractional, event_id="fractional")  # production takes it: the answer stands
    assert status == 200
    assert infer(api, events[1], event_id="whole")[0] == 200
    shadow.reset(wait=True)
    writer.flush(10)

    shadowed = set(PredictionLog.objects.filter(role="shadow").values_list("event_id", flat=True))
    assert shadowed == {"whole"}
    assert _sample("mlops_inference_shadow_runs_total", product=PRODUCT, model=label, outcome="invalid_input") == refused + 1


# --- integer inputs refuse what they would truncate -----------------------------------------


def test_an_integer_model_refuses_a_fractional_value_naming_the_feature(production, api, events):
    production("int64")
    runtime.refresh()
    fractional = {**events[0], INTEGER_FEATURE: 1.5}
    status, answer = infer(api, fractional)
    assert status == 400
    assert list(answer["error"]["fields"]) == [f"features.{INTEGER_FEATURE}"]
    status, answer = infer_batch(api, [events[1], fractional])
    assert status == 400
    assert list(answer["error"]["fields"]) == [f"items.1.features.{INTEGER_FEATURE}"]


def test_an_integer_model_takes_a_whole_float_and_refuses_one_out_of_its_range(production, api, events, typed_files):
    production("int64")
    runtime.refresh()
    status, answer = infer(api, {**events[0], INTEGER_FEATURE: float(events[0][INTEGER_FEATURE])})
    assert status == 200, answer
    assert answer["score"] == pytest.approx(expected_score(typed_files["int64"], events[0]), rel=1e-6)
    for too_large in (2**63, 1e19):  # one past int64, as an integer and as a whole float
        status, answer = infer(api, {**events[0], INTEGER_FEATURE: too_large})
        assert status == 400, too_large
        assert list(answer["error"]["fields"]) == [f"features.{INTEGER_FEATURE}"]


def test_a_value_the_integer_canary_cannot_take_is_refused_whichever_model_the_event_reaches(production, register, api, events):
    production("float32")
    canary = register("int64")
    registry.canary_set(product=PRODUCT, canary_model_id=canary.pk, canary_percent=50, user=None, reason="test")
    runtime.refresh()
    event_ids = [f"evt-{n}" for n in range(40)]
    to_canary = next(e for e in event_ids if routing.in_canary(PRODUCT, e, 5_000))
    to_production = next(e for e in event_ids if not routing.in_canary(PRODUCT, e, 5_000))
    fractional = {**events[0], INTEGER_FEATURE: 1.5}
    for event_id in (to_canary, to_production):
        status, answer = infer(api, fractional, event_id=event_id)
        assert status == 400, (event_id, answer)
        assert list(answer["error"]["fields"]) == [f"features.{INTEGER_FEATURE}"]
        assert "whole number" in answer["error"]["fields"][f"features.{INTEGER_FEATURE}"][0]
    status, answer = api(
        "/v1/infer/batch", {"items": [{"event_id": e, "product": PRODUCT, "features": fractional} for e in (to_canary, to_production)]}
    )
    assert status == 400
    assert sorted(answer["error"]["fields"]) == [f"items.0.features.{INTEGER_FEATURE}", f"items.1.features.{INTEGER_FEATURE}"]


# --- dual-model stream ----------------------------------------------------------------------


@pytest.fixture
def dual(settings, register):
    """``dual("float32", "int64")``: the product's dual-model configuration, and a key to stream with."""
    settings.RATELIMIT_ENABLE = False
    settings.API_AUTH_DEV_BYPASS = False
    dual_models.reset()
    recorder.memory.reset()

    def configure(fast: str, full: str) -> str:
        fast_model, full_model = register(fast), register(full)
        registry.dual_model_set(
            product=PRODUCT,
            fast_model_id=fast_model.pk,
            full_model_id=full_model.pk,
            fast_timeout_ms=5_000,
            full_timeout_ms=5_000,
            user=None,
            reason="test",
        )
        _, key = registry.api_key_create(client="input-type-streams", role="inference_client")
        api_keys.invalidate()
        return key

    yield configure
    recorder.flush(10)
    dual_models.reset()
    recorder.memory.reset()


@pytest.mark.parametrize(("fast", "full"), [("float32", "int64"), ("int64", "float64"), ("float64-reversed", "float32")])
def test_dual_model_fast_and_full_answer_in_their_own_input_types(fast, full, dual, events, typed_files):
    key = dual(fast, full)
    result = stream(body(events[0]), bearer(key))
    assert result.names == ["preliminary", "final", "done"], result.events
    assert result.one("preliminary")["data"]["score"] == pytest.approx(expected_score(typed_files[fast], events[0]), rel=1e-6)
    assert result.one("final")["data"]["score"] == pytest.approx(expected_score(typed_files[full], events[0]), rel=1e-6)


def test_dual_model_stream_refuses_a_value_its_integer_model_would_truncate(dual, events):
    key = dual("float32", "int64")
    result = stream(body({**events[0], INTEGER_FEATURE: 1.5}), bearer(key))
    assert result.status == 400
    assert list(result.json["error"]["fields"]) == [f"features.{INTEGER_FEATURE}"]
