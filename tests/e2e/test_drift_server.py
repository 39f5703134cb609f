"""Drift as it will be used: the platform of `make run` (daphne, the log writer and the in-process guard
thread running the drift job), traffic through ``POST /v1/infer/batch``, the answer read from ``GET /v1/drift``.

Two products with the same demo model and the same reference (its training data): ``fraud_score``
from ``bootstrap_demo`` gets traffic drawn from the reference, ``fraud_shifted`` (registered over
HTTP with the reference as a multipart part) the same draw with one feature moved up by one
standard deviation.
"""

import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn.datasets import load_breast_cancer

from mlops.demo import build_demo_models, demo_feature_names, write_demo_reference
from tests.e2e.embedded import embedded_platform

pytestmark = pytest.mark.e2e

ROWS = 1024
SHIFTED = "mean_radius"
ENV = {
    "ROLLOUT_GUARD_IN_PROCESS": "1",
    "DRIFT_INTERVAL_SECONDS": "1",
    "DRIFT_LAG_SECONDS": "0.5",
    "DRIFT_MIN_ROWS": "500",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with embedded_platform(tmp_path_factory.mktemp("drift-var"), env=ENV) as running:
        yield running


def _headers(platform) -> dict:
    return {"Authorization": f"Bearer {platform.keys['internal_service']}"}


def _traffic(*, seed: int, shift: str | None = None) -> list[dict]:
    data = load_breast_cancer().data
    rows = data[np.random.default_rng(seed).integers(0, data.shape[0], ROWS)].copy()
    names = demo_feature_names()
    if shift is not None:
        rows[:, names.index(shift)] += data[:, names.index(shift)].std()
    return [{name: float(value) for name, value in zip(names, row, strict=True)} for row in rows]


def _send(platform, product: str, rows: list[dict]) -> None:
    for start in range(0, len(rows), 256):
        items = [{"event_id": f"drift-{uuid.uuid4().hex}", "product": product, "features": f} for f in rows[start : start + 256]]
        response = requests.post(f"{platform.url}/v1/infer/batch", json={"items": items}, headers=_headers(platform), timeout=30)
        assert response.status_code == 200, response.text
        assert all(item.get("status", 200) == 200 for item in response.json()["items"]), response.text[:500]


def _drift_once_evaluated(platform, product: str, *, within: float = 90) -> dict:
    """Poll ``GET /v1/drift/{product}`` until its production model's window holds every row sent."""
    deadline = time.monotonic() + within
    body = None
    while time.monotonic() < deadline:
        response = requests.get(f"{platform.url}/v1/drift/{product}", headers=_headers(platform), timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        model = body["models"][0]
        if model["window"] and model["window"]["rows"] >= ROWS and all(f["psi"] is not None for f in model["features"]):
            return model
        time.sleep(0.2)  # a poll interval, not a synchronisation: the deadline decides
    pytest.fail(f"drift of {product} never covered {ROWS} rows: {body}")


def _register_with_reference(platform, product: str, folder: Path) -> str:
    model = next(m for m in build_demo_models(folder / "models") if m.name == "logreg")
    reference = write_demo_reference(folder / "reference")
    with open(model.path, "rb") as onnx_file, open(reference, "rb") as reference_file:
        response = requests.post(
            f"{platform.url}/v1/models",
            data={"product": product, "name": "logreg", "version": "1", "reason": "drift e2e"},
            files={"file": ("model.onnx", onnx_file), "reference": ("reference.csv", reference_file)},
            headers=_headers(platform),
            timeout=60,
        )
    assert response.status_code == 201, response.text
    model_id = response.json()["model_id"]
    for target in ("validated", "production"):
        promoted = requests.post(
            f"{platform.url}/v1/models/{model_id}/promote",
            json={"target": target, "reason": "drift e2e"},
            headers=_headers(platform),
            timeout=30,
        )
        assert promoted.status_code == 200, promoted.text
    return model_id


def _wait_until_served(platform, product: str, features: dict, *, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        body = {"event_id": f"probe-{uuid.uuid4().hex}", "product": product, "features": features}
        if requests.post(f"{platform.url}/v1/infer", json=body, headers=_headers(platform), timeout=10).status_code == 200:
            return
        time.sleep(0.2)
    pytest.fail(f"{product} was never served")


def test_reference_traffic_keeps_every_feature_under_0_1(platform):
    _send(platform, "fraud_score", _traffic(seed=11))
    model = _drift_once_evaluated(platform, "fraud_score")
    assert model["baseline"]["source"] == "reference"  # bootstrap_demo pushed the training data
    assert len(model["features"]) == 30
    assert all(f["psi"] < 0.1 for f in model["features"]), model["features"]


def test_one_feature_shifted_by_one_standard_deviation_is_the_only_significant_one(platform, tmp_path):
    _register_with_reference(platform, "fraud_shifted", tmp_path)
    rows = _traffic(seed=12, shift=SHIFTED)
    _wait_until_served(platform, "fraud_shifted", rows[0])
    _send(platform, "fraud_shifted", rows[1:])
    model = _drift_once_evaluated(platform, "fraud_shifted")
    assert model["baseline"]["source"] == "reference"
    significant = [f["name"] for f in model["features"] if f["level"] == "significant"]
    assert significant == [SHIFTED], model["features"]
    assert model["features"][0]["name"] == SHIFTED and model["features"][0]["psi"] >= 0.25
