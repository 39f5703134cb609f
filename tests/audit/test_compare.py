"""The comparison (`audit.selectors.comparison`, ``GET /v1/audit/compare`` and its admin page): evidence on
known counts, segments that show what the whole hides, the schema that says exactly what is answered."""

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core import checks
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from audit import selectors
from audit.models import Outcome, PredictionLog
from mlops.models import CanaryConfig
from tests.audit import dataset, segmented
from tests.audit.conftest import make_record, make_version
from tests.audit.test_api import client_for
from tests.logged import log_rows, record_outcomes

pytestmark = pytest.mark.django_db

PRODUCT = "fraud_score"


@pytest.fixture
def auditor():
    return client_for("auditor")


@pytest.fixture
def auditor_page(client):
    user = User.objects.create_user("compare-auditor", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_predictionlog"))
    client.force_login(user)
    return client


@pytest.fixture
def segmented_log(settings, production_version, canary_version):
    settings.EVIDENCE_SEGMENTS = segmented.SEGMENTS
    segmented.build(production_version, canary_version)


def judged(version, *, role: str, answers: int, blocked: int) -> None:
    """``answers`` of ``role`` whose events all have a negative outcome, the first ``blocked`` of them blocked."""
    now = timezone.now()
    rows, outcomes = [], []
    for index in range(answers):
        event = f"{role}-{uuid.uuid4().hex[:16]}"
        block = index < blocked
        rows.append(
            PredictionLog(
                **make_record(
                    version,
                    event_id=event,
                    role=role,
                    decision="block" if block else "allow",
                    score=0.9 if block else 0.1,
                    created_at=now - timedelta(minutes=3),
                )
            )
        )
        outcomes.append(Outcome(product=PRODUCT, event_id=event, label=False, observed_at=now, source="chargebacks"))
    log_rows(rows)
    record_outcomes(outcomes)


def compare(client, window: str = "1h") -> dict:
    answer = client.get("/v1/audit/compare", {"product": PRODUCT, "window": window})
    assert answer.status_code == 200, answer.content
    return answer.json()


# --- evidence on known counts -------------------------------------------------------------------


def test_none_of_five_against_forty_of_a_thousand_is_no_evidence(auditor, production_version, canary_version):
    judged(production_version, role="production", answers=1000, blocked=40)
    judged(canary_version, role="canary", answers=5, blocked=0)
    body = compare(auditor)
    fp = body["evidence"]["false_positive_rate"]
    assert (fp["a"]["count"], fp["a"]["total"], fp["b"]["count"], fp["b"]["total"]) == (0, 5, 40, 1000)
    assert fp["difference"] == pytest.approx(-0.04)
    assert fp["p_value"] == pytest.approx(1.0)
    assert fp["low"] < 0 < fp["high"]
    # Wilson: 0 of 5 is anything from 0% to 43%.
    assert (fp["a"]["low"], fp["a"]["high"]) == (pytest.approx(0.0), pytest.approx(0.4345, abs=1e-4))
    assert fp["more_needed"] > 0
    assert body["verdicts"]["false_positive_rate"] == (
        f"no evidence of a difference (p=1.000); needs {fp['more_needed']} more negative outcomes to detect a 2-point difference"
    )


def test_a_real_difference_has_a_small_p_value_and_says_which_side(auditor, production_version, canary_version):
    judged(production_version, role="production", answers=1000, blocked=10)
    judged(canary_version, role="canary", answers=200, blocked=30)
    body = compare(auditor)
    fp = body["evidence"]["false_positive_rate"]
    assert fp["difference"] == pytest.approx(0.15 - 0.01)
    assert 0 < fp["low"] < fp["difference"] < fp["high"]
    assert fp["p_value"] < 1e-6
    assert body["verdicts"]["false_positive_rate"] == "canary higher (p<0.001)"  # found: no "needs more" clause
    assert body["verdicts"]["block_rate"] == "canary higher (p<0.001)"
    # The scores follow the decisions: the canary's tend higher.
    assert body["evidence"]["score"]["superiority"] > 0.5 and body["evidence"]["score"]["mann_whitney_p"] < 0.001
    assert body["verdicts"]["score"].startswith("canary scores tend higher (p<0.001")


def test_a_canary_without_outcomes_yet_says_how_many_it_needs(auditor, production_version, canary_version):
    judged(production_version, role="production", answers=1000, blocked=40)
    log_rows([PredictionLog(**make_record(canary_version, role="canary"))])
    body = compare(auditor)
    fp = body["evidence"]["false_positive_rate"]
    assert (fp["a"]["total"], fp["p_value"], fp["difference"]) == (0, None, None)
    assert fp["more_needed"] > 1000
    assert body["verdicts"]["false_positive_rate"] == (
        f"not comparable: a side has no negative outcomes; needs {fp['more_needed']} more negative outcomes to detect a 2-point difference"
    )


def test_the_sides_are_the_configured_versions_while_a_canary_runs(auditor, production_version, canary_version):
    earlier = make_version("gbdt", "0", status="archived")
    judged(canary_version, role="canary", answers=3, blocked=0)
    judged(earlier, role="canary", answers=7, blocked=7)
    judged(production_version, role="production", answers=4, blocked=0)
    assert compare(auditor)["canary"]["answered"] == 10  # no canary configured: every version of the role
    CanaryConfig.objects.create(product=PRODUCT, production_model=production_version, canary_model=canary_version, canary_basis_points=1000)
    body = compare(auditor)
    assert body["canary"]["answered"] == 3 and [v["model"] for v in body["canary"]["model_versions"]] == ["gbdt@1"]
    assert body["production"]["answered"] == 4


# --- segments -----------------------------------------------------------------------------------


def test_a_canary_better_overall_but_worse_in_one_segment_shows_in_the_api(auditor, segmented_log):
    body = compare(auditor)
    overall = body["evidence"]["false_positive_rate"]
    assert (overall["a"]["count"], overall["a"]["total"], overall["b"]["count"], overall["b"]["total"]) == (50, 1100, 100, 1000)
    assert overall["high"] < 0 and body["verdicts"]["false_positive_rate"].startswith("canary lower")

    by_feature, by_score = body["segments"]
    assert (by_feature["kind"], by_feature["feature"], by_feature["available"], by_feature["reason"]) == (
        "feature", segmented.FEATURE, True, None
    )  # fmt: skip
    low, high = by_feature["bins"]
    assert (low["low"], low["high"], high["low"], high["high"]) == (None, 15.0, 15.0, None)
    assert low["label"] == "mean radius < 15" and high["label"] == "mean radius ≥ 15"
    assert (low["canary"]["requests"], low["production"]["requests"], high["canary"]["requests"], high["production"]["requests"]) == (
        1000, 500, 100, 500
    )  # fmt: skip
    worse = high["evidence"]["false_positive_rate"]
    assert worse["difference"] == pytest.approx(0.3 - 0.1) and worse["low"] > 0 and worse["p_value"] < 0.001
    assert high["verdicts"]["false_positive_rate"] == "canary higher (p<0.001)"
    assert low["verdicts"]["false_positive_rate"] == "canary lower (p<0.001)"
    # The segment's figures are health's own, narrowed: the same keys as the whole.
    assert set(high["production"]) == set(body["production"]) and set(high["evidence"]) == set(body["evidence"])

    assert [b["label"] for b in by_score["bins"]] == ["0 ≤ score < 0.5", "0.5 ≤ score ≤ 1"]
    assert by_score["bins"][1]["canary"]["decision_mix"]["block"]["count"] == 50


def test_a_redacted_or_missing_feature_is_not_available_and_says_why(auditor, settings, production_version, canary_version):
    judged(production_version, role="production", answers=20, blocked=2)
    settings.AUDIT_REDACT_HASH = ["email"]
    settings.EVIDENCE_SEGMENTS = {PRODUCT: [{"feature": "email", "bins": 2}, {"feature": "no such feature", "bins": 3}]}
    hashed, missing = compare(auditor)["segments"]
    assert (hashed["available"], hashed["bins"]) == (False, [])
    assert hashed["reason"] == "logged as a keyed hash, not a number (AUDIT_REDACT_HASH)"
    assert (missing["available"], missing["reason"]) == (False, "not logged on production's answers in the window")


def test_a_canary_row_whose_feature_is_no_number_is_left_out_of_the_bins(auditor, segmented_log, canary_version):
    log_rows([PredictionLog(**make_record(canary_version, role="canary", features={segmented.FEATURE: "n/a"}))])
    by_feature = compare(auditor)["segments"][0]
    assert by_feature["available"] and sum(b["canary"]["answered"] for b in by_feature["bins"]) == 1100


def test_the_page_shows_the_segment_where_the_canary_is_worse(auditor_page, auditor, segmented_log):
    body = page(auditor_page)
    api = compare(auditor)
    table = re.search(r'<table class="compare-table segment-table" data-kind="feature">(.*?)</table>', body, re.S).group(1)
    rows = re.findall(r'<tr class="segment-row">(.*?)</tr>', table, re.S)
    assert len(rows) == 2
    assert "mean radius ≥ 15" in rows[1] and "canary higher (p&lt;0.001)" in rows[1]
    assert "canary lower (p&lt;0.001)" in rows[0]
    # Each row draws its two differences on the axis its column shares.
    worse = api["segments"][0]["bins"][1]["evidence"]["false_positive_rate"]
    drawn = re.findall(r'<g class="interval interval-difference" data-value="([^"]*)" data-low="([^"]*)" data-high="([^"]*)">', rows[1])
    assert [float(v) for v in drawn[0]] == pytest.approx([worse["difference"], worse["low"], worse["high"]], rel=1e-5)


def test_an_unavailable_segment_says_so_on_the_page(auditor_page, settings, production_version):
    judged(production_version, role="production", answers=10, blocked=1)
    settings.AUDIT_REDACT_DROP = ["mean radius"]
    settings.EVIDENCE_SEGMENTS = {PRODUCT: [{"feature": "mean radius", "bins": 4}]}
    assert "Not available: dropped before logging (AUDIT_REDACT_DROP)." in page(auditor_page)


# --- the page draws what the API answers --------------------------------------------------------


def page(client, window: str = "1h") -> str:
    response = client.get(reverse("admin:audit_predictionlog_compare"), {"product": PRODUCT, "window": window})
    assert response.status_code == 200
    return response.content.decode()


def drawn_intervals(html: str, row_id: str) -> dict[str, tuple[float | None, ...]]:
    row = re.search(rf'<tr id="{row_id}"[^>]*>(.*?)</tr>', html, re.S).group(1)
    found = re.findall(r'<g class="interval interval-(\w+)" data-value="([^"]*)" data-low="([^"]*)" data-high="([^"]*)">', row)
    return {series: tuple(float(v) if v else None for v in values) for series, *values in found}


def test_the_page_draws_each_rate_and_difference_with_the_api_intervals(auditor_page, auditor, production_version, canary_version):
    judged(production_version, role="production", answers=1000, blocked=40)
    judged(canary_version, role="canary", answers=5, blocked=0)
    html, api = page(auditor_page), compare(auditor)
    assert html.count('<svg class="interval-chart"') >= 2 * 8 + 2
    for name in ("false_positive_rate", "block_rate", "cache_hit_rate"):
        figure = api["evidence"][name]
        drawn = drawn_intervals(html, f"rate-{name}")
        for series, rate in (("production", figure["b"]), ("canary", figure["a"])):
            assert drawn[series] == pytest.approx((rate["value"], rate["low"], rate["high"]), rel=1e-5)
        assert drawn["difference"] == pytest.approx((figure["difference"], figure["low"], figure["high"]), rel=1e-5)
    row = re.search(r'<tr id="rate-false_positive_rate"[^>]*>(.*?)</tr>', html, re.S).group(1)
    assert "-4.0 pts" in row and "p=1.000" in row and "needs " in row and "more negative outcomes to detect a 2-point difference" in row
    assert "How to read this page" in html


def test_the_page_draws_the_p95_ratio_and_the_error_rate(auditor_page, auditor, production_version, canary_version):
    dataset.build(production_version, canary_version)
    html, api = page(auditor_page), compare(auditor)
    error = api["canary"]["error_rate"]
    assert drawn_intervals(html, "row-error-rate")["canary"] == pytest.approx((error["value"], error["low"], error["high"]), rel=1e-5)
    ratio = api["evidence"]["latency"]["p95_ratio"]
    assert drawn_intervals(html, "row-p95-ratio")["ratio"][0] == pytest.approx(ratio["ratio"], rel=1e-5)
    assert api["verdicts"]["p95_ratio"] in html


# --- the schema says exactly what is answered ---------------------------------------------------


def _resolve(schema: dict, components: dict) -> tuple[dict, bool]:
    """The object schema behind refs and allOf wrappers, and whether null is allowed."""
    nullable = bool(schema.get("nullable"))
    while "$ref" in schema or "allOf" in schema:
        if "allOf" in schema:
            (schema,) = schema["allOf"]
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
        nullable = nullable or bool(schema.get("nullable"))
    return schema, nullable


def conforms(value, schema: dict, components: dict, path: str = "$") -> list[str]:
    """Where ``value`` is not exactly ``schema``: missing or undeclared keys, null where not nullable, wrong types."""
    schema, nullable = _resolve(schema, components)
    if value is None:
        return [] if nullable else [f"{path}: null, not nullable"]
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        problems = []
        declared, required = set(schema["properties"]), set(schema.get("required", []))
        if set(value) != declared:
            problems.append(f"{path}: keys {sorted(set(value) ^ declared)} differ from the schema")
        if required != declared:
            problems.append(f"{path}: optional in the schema: {sorted(declared - required)}")
        for key in declared & set(value):
            problems += conforms(value[key], schema["properties"][key], components, f"{path}.{key}")
        return problems
    if kind == "array":
        return [p for i, item in enumerate(value) for p in conforms(item, schema["items"], components, f"{path}[{i}]")]
    types = {"integer": int, "number": (int, float), "string": str, "boolean": bool}
    if kind in types and (not isinstance(value, types[kind]) or (kind != "boolean" and isinstance(value, bool))):
        return [f"{path}: {value!r} is not {kind}"]
    return []


def test_the_schema_describes_every_key_of_the_answer_exactly(auditor, segmented_log, settings):
    settings.EVIDENCE_SEGMENTS = {PRODUCT: [*segmented.SEGMENTS[PRODUCT], {"feature": "email", "bins": 2}]}
    schema = SchemaGenerator().get_schema(request=None, public=True)
    response = schema["paths"]["/v1/audit/compare"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    body = compare(auditor)
    assert body["segments"][2]["available"] is False  # a null reason and an empty bin list are covered too
    assert conforms(body, response, schema["components"]["schemas"]) == []
    tampered = {**body, "extra": 1, "production": {**body["production"], "failovers": None, "requests": None}}
    assert len(conforms(tampered, response, schema["components"]["schemas"])) == 2  # the walker does look
    # With no traffic at all, every figure that cannot be computed is null where the schema allows it.
    empty = auditor.get("/v1/audit/compare", {"product": "no-such-product"}).json()
    assert conforms(empty, response, schema["components"]["schemas"]) == []
    assert empty["evidence"]["false_positive_rate"]["p_value"] is None and empty["segments"] == []


# --- settings are checked -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("EVIDENCE_DETECTABLE_DIFFERENCE", 0, "audit.E002"),
        ("EVIDENCE_DETECTABLE_DIFFERENCE", 2.0, "audit.E002"),
        ("EVIDENCE_SEGMENTS", [], "audit.E003"),
        ("EVIDENCE_SEGMENTS", {PRODUCT: {"feature": "x", "bins": 4}}, "audit.E003"),
        ("EVIDENCE_SEGMENTS", {PRODUCT: [{"feature": "x", "bins": 1}]}, "audit.E003"),
        ("EVIDENCE_SEGMENTS", {PRODUCT: [{"feature": "", "bins": 4}]}, "audit.E003"),
        ("EVIDENCE_SEGMENTS", {PRODUCT: [{"score_band": [0, 0.5, 0.5, 1]}]}, "audit.E003"),
        ("EVIDENCE_SEGMENTS", {PRODUCT: [{"score_band": [0, 1.5]}]}, "audit.E003"),
        ("EVIDENCE_SEGMENTS", {PRODUCT: [{"quantiles": 4}]}, "audit.E003"),
    ],
)
def test_bad_evidence_settings_fail_the_system_check(settings, name, value, error):
    setattr(settings, name, value)
    assert error in [message.id for message in checks.run_checks()]


def test_the_default_evidence_settings_pass_and_segment_the_demo_product():
    from django.conf import settings

    from mlops.demo import PRODUCT as DEMO

    assert not [m for m in checks.run_checks() if m.id in ("audit.E002", "audit.E003")]
    assert {"feature": "mean_radius", "bins": 4} in settings.EVIDENCE_SEGMENTS[DEMO]


def test_selectors_export_the_comparison():
    assert selectors.canary_comparison.__module__ == "audit.selectors.comparison"
