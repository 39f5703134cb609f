"""The backtest report's segments: a candidate equal to production overall on false positives but
wrong for one segment (the demo logistic regression with its probability turned around where
``mean_radius`` > 17, `tests.evidence_models`) shows it in the top ``mean_radius`` bin, in the
report, the API and the report page; a segment feature that cannot be binned says why."""

import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from audit.models import BacktestStatus
from inference.backtests import backtest_create, backtest_run
from mlops import services as registry
from mlops.demo import PRODUCT
from tests.backtests.conftest import ROWS
from tests.evidence_models import build_segment_erring_model
from tests.mlops.security.conftest import staff_client

pytestmark = pytest.mark.django_db(transaction=True)

SEGMENTS = {PRODUCT: [{"feature": "mean_radius", "bins": 4}, {"score_band": [0, 0.5, 1]}]}


@pytest.fixture(autouse=True)
def segments(settings, transactional_db):
    settings.EVIDENCE_SEGMENTS = SEGMENTS
    registry.roles_sync()  # the role groups the report page's viewer needs (a transactional test starts from none)


@pytest.fixture
def erring(local_store, demo_model_files, tmp_path):
    """A candidate that flips the positive probability where ``mean_radius`` (the first feature) > 17."""
    demo = demo_model_files["logreg"]
    path = build_segment_erring_model(Path(demo.path), tmp_path / "erring.onnx", feature_index=0, above=17.0)
    return registry.model_push(source=path, store=local_store, product=PRODUCT, name="logreg", version="erring", threshold=demo.threshold)


def run(model) -> dict:
    backtest = backtest_run(backtest_id=backtest_create(model_version_id=model.pk).pk)
    assert backtest.status == BacktestStatus.DONE, backtest.error
    return backtest


def test_the_feature_bins_are_quantiles_of_the_replayed_rows_and_hold_every_scored_row(logged, erring):
    by_feature, by_score = run(erring).report["segments"]
    radii = [row.features["mean_radius"] for row in logged]
    inner = [b["high"] for b in by_feature["bins"][:-1]]
    assert inner == pytest.approx(list(np.quantile(radii, [0.25, 0.5, 0.75])))
    assert (by_feature["bins"][0]["low"], by_feature["bins"][-1]["high"]) == (None, None)  # open outer bins
    assert sum(b["rows"] for b in by_feature["bins"]) == ROWS and by_feature["outside"] == 0
    assert [b["label"] for b in by_score["bins"]] == ["0 ≤ score < 0.5", "0.5 ≤ score ≤ 1"]
    assert "production's logged score" in by_score["binned_by"]
    production_blocks = sum(row.decision == "block" for row in logged)
    assert by_score["bins"][1]["rows"] == production_blocks  # the band of production's score, not the candidate's


def test_a_candidate_equal_overall_but_wrong_for_one_segment_shows_in_its_top_bin(logged, erring):
    report = run(erring).report
    overall = report["outcomes"]
    assert overall["false_positive_rate_difference"]["difference"] == 0.0  # no more false positives overall
    assert not any("false-positive" in failure for failure in report["verdict"]["failures"])

    by_feature = report["segments"][0]
    *lower, top = by_feature["bins"]
    assert top["label"].startswith("mean_radius ≥ ")
    worse = top["evidence"]["true_positive_rate"]
    assert worse["a"]["value"] < worse["b"]["value"] and worse["high"] < 0 and worse["p_value"] < 0.001
    assert top["verdicts"]["true_positive_rate"] == "candidate lower (p<0.001)"
    assert top["agreement"]["value"] < 0.5
    for segment in lower:  # below 17 the candidate is production
        assert segment["agreement"]["value"] == pytest.approx(1.0, abs=0.05)
        assert segment["evidence"]["true_positive_rate"]["p_value"] > 0.05
        assert segment["verdicts"]["true_positive_rate"].startswith("no evidence of a difference")
    # The rates are the outcomes section's, narrowed: the bins add up to the whole.
    for side in ("production", "candidate"):
        for key in ("labelled", "negatives", "positives"):
            assert sum(b[side][key] for b in by_feature["bins"]) == overall[side][key]
        assert sum(b[side]["true_positive_rate"]["count"] for b in by_feature["bins"]) == overall[side]["true_positive_rate"]["count"]


def test_the_api_answers_the_segments_of_the_report(api, logged, erring):
    backtest = run(erring)
    body = api.get(f"/v1/backtests/{backtest.pk}").json()
    assert body["report"]["segments"] == backtest.report["segments"]


def test_the_report_page_shows_the_segment_where_the_candidate_is_worse(logged, erring):
    backtest = run(erring)
    html = staff_client("viewer").get(f"/admin/audit/backtest/{backtest.pk}/report/").content.decode()
    table = re.search(r'<table class="backtest-table segment-table" data-kind="feature">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r'<tr class="segment-row">(.*?)</tr>', table, re.S)
    assert len(rows) == 4
    assert "mean_radius ≥ " in rows[3] and "candidate lower (p&lt;0.001)" in rows[3]
    assert "candidate lower" not in rows[0]
    top = backtest.report["segments"][0]["bins"][3]["evidence"]["true_positive_rate"]
    drawn = re.findall(r'<g class="interval interval-difference" data-value="([^"]*)" data-low="([^"]*)" data-high="([^"]*)">', rows[3])
    # The true-positive difference is the row's last drawn (no negative outcome above 17: no FP difference to draw).
    assert [float(v) for v in drawn[-1]] == pytest.approx([top["difference"], top["low"], top["high"]], rel=1e-5)
    assert "Binned by production's logged score" in unescape(html)


def test_a_redacted_or_missing_segment_feature_is_not_available_and_says_why(logged, push_copy, settings):
    settings.AUDIT_REDACT_HASH = ["email"]
    settings.EVIDENCE_SEGMENTS = {PRODUCT: [{"feature": "email", "bins": 2}, {"feature": "no such feature", "bins": 3}]}
    backtest = run(push_copy("copy"))
    hashed, missing = backtest.report["segments"]
    assert (hashed["available"], hashed["bins"]) == (False, [])
    assert hashed["reason"] == "logged as a keyed hash, not a number (AUDIT_REDACT_HASH)"
    assert (missing["available"], missing["reason"]) == (False, "not logged on production's answers in the window")
    assert backtest.report["rows"]["scored"] == ROWS  # the rows are still replayed

    html = staff_client("viewer").get(f"/admin/audit/backtest/{backtest.pk}/report/").content.decode()
    assert "Not available: logged as a keyed hash, not a number (AUDIT_REDACT_HASH)." in html
