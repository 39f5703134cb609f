"""The evidence, tested the way it is used: real ONNX models that differ from production in known ways
take half of simulated traffic through the API, outcomes arrive, and the comparison and a backtest
say what is known about each.

Production is the demo logistic regression. The canaries (`tests.evidence_models`): its identical
copy, the same model with the positive logit shifted (more blocks), and one that turns its answer
around for large ``mean_radius`` (wrong on one segment). Traffic is the bundled data set's rows with
a little noise; the outcomes are their true labels.
"""

from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.datasets import load_breast_cancer

from audit import writer
from inference.backtests import backtest_create, backtest_run
from inference.runtime import runtime
from mlops import services
from mlops.demo import PRODUCT, demo_feature_names
from tests.evidence_models import build_biased_model, build_segment_erring_model

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = 800


@pytest.fixture
def traffic():
    """``EVENTS`` noisy rows of the data set (2 % of each feature's spread) and their labels (malignant: positive)."""
    data = load_breast_cancer()
    draw = np.random.default_rng(16)
    picked = draw.integers(0, len(data.data), EVENTS)
    rows = data.data[picked] + draw.normal(0, 0.02, (EVENTS, data.data.shape[1])) * data.data.std(axis=0)
    names = demo_feature_names()
    return [{name: float(value) for name, value in zip(names, row, strict=True)} for row in rows], [
        bool(t == 0) for t in data.target[picked]
    ]


def canary_of(kind: str, *, push_demo, local_store, demo_model_files, tmp_path: Path):
    """Register the ``kind`` of canary beside production and send it half of the traffic."""
    source = Path(demo_model_files["logreg"].path)
    path = {
        "copy": lambda: source,
        "biased": lambda: build_biased_model(source, tmp_path / "biased.onnx", shift=6.0),
        "segment": lambda: build_segment_erring_model(source, tmp_path / "segment.onnx", feature_index=0, above=17.0),
    }[kind]()
    candidate = services.model_push(source=path, store=local_store, product=PRODUCT, name="logreg", version=kind, threshold=0.5)
    services.model_version_validate(model_version_id=candidate.pk, user=None, reason="evidence test")
    services.canary_set(product=PRODUCT, canary_model_id=candidate.pk, canary_percent=50, user=None, reason="evidence test")
    runtime.refresh()
    return candidate


def send(api, traffic) -> None:
    events, labels = traffic
    for start in range(0, EVENTS, 100):
        items = [{"event_id": f"evt-{i}", "product": PRODUCT, "features": events[i]} for i in range(start, start + 100)]
        answer = api.post("/v1/infer/batch", orjson.dumps({"items": items}), content_type="application/json")
        assert answer.status_code == 200, answer.content
    assert writer.flush(10)
    outcomes = [{"product": PRODUCT, "event_id": f"evt-{i}", "label": labels[i], "source": "chargebacks"} for i in range(EVENTS)]
    assert api.post("/v1/outcomes", orjson.dumps(outcomes), content_type="application/json").status_code in (200, 201)


def comparison(api) -> dict:
    answer = api.get("/v1/audit/compare", {"product": PRODUCT, "window": "1h"})
    assert answer.status_code == 200, answer.content
    return answer.json()


@pytest.fixture
def run(serving, api, traffic, push_demo, local_store, demo_model_files, tmp_path):
    def run(kind: str) -> tuple[dict, dict]:
        candidate = canary_of(kind, push_demo=push_demo, local_store=local_store, demo_model_files=demo_model_files, tmp_path=tmp_path)
        send(api, traffic)
        compared = comparison(api)
        assert compared["canary"]["requests"] + compared["production"]["requests"] == EVENTS
        assert min(compared["canary"]["requests"], compared["production"]["requests"]) > EVENTS / 3  # the split is about half
        record = backtest_run(backtest_id=backtest_create(model_version_id=candidate.pk, last=EVENTS).pk)
        assert record.status == "done", record.error
        return compared, record.report

    return run


def test_an_identical_copy_shows_no_difference_anywhere(run):
    compared, backtest = run("copy")
    for name in ("false_positive_rate", "true_positive_rate", "block_rate"):
        figure = compared["evidence"][name]
        assert figure["low"] < 0 < figure["high"] and figure["p_value"] > 0.05, (name, figure)
        assert compared["verdicts"][name].startswith("no evidence of a difference")
    assert compared["evidence"]["score"]["mann_whitney_p"] > 0.05
    assert backtest["decisions"]["agreement"]["value"] == 1.0


def test_a_biased_copy_blocks_more_and_the_evidence_says_so(run):
    compared, backtest = run("biased")
    block = compared["evidence"]["block_rate"]
    assert block["low"] > 0 and block["p_value"] < 0.001
    assert compared["verdicts"]["block_rate"].startswith("canary higher")
    assert compared["evidence"]["false_positive_rate"]["difference"] > 0
    assert compared["evidence"]["score"]["superiority"] > 0.5 and compared["evidence"]["score"]["mann_whitney_p"] < 0.001
    assert backtest["decisions"]["agreement"]["value"] < 1.0


def test_a_model_wrong_on_one_segment_is_flagged_in_that_segment_only(run):
    compared, _ = run("segment")
    (radius,) = [segment for segment in compared["segments"] if segment["feature"] == "mean_radius"]
    lowest, *_, highest = radius["bins"]
    # Large tumours are mostly malignant: turned around there, the canary misses them.
    missed = highest["evidence"]["true_positive_rate"]
    assert missed["high"] < 0 and missed["p_value"] < 0.001, missed
    assert highest["verdicts"]["true_positive_rate"].startswith("canary lower")
    for name in ("true_positive_rate", "false_positive_rate", "block_rate"):
        assert lowest["evidence"][name]["p_value"] is None or lowest["evidence"][name]["p_value"] > 0.05, (name, lowest["evidence"][name])
