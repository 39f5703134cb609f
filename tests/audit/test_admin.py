"""Audit review in the admin: read-only, gated by view_predictionlog, exports of the filtered rows."""

import csv
import io

import orjson
import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from audit.models import PredictionLog
from tests.audit import dataset
from tests.audit.conftest import staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(production_version, canary_version):
    return dataset.build(production_version, canary_version)


@pytest.fixture
def plain_staff_client(client):
    client.force_login(staff("clerk"))
    return client


PAGES = [
    ("admin:audit_predictionlog_changelist", []),
    ("admin:audit_predictionlog_compare", []),
    ("admin:audit_predictionlog_export", ["csv"]),
    ("admin:audit_outcome_changelist", []),
]


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_pages_render_for_an_auditor(auditor_client, rows, name, args):
    response = auditor_client.get(reverse(name, args=args))
    assert response.status_code == 200


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_pages_are_refused_to_staff_without_the_permission(plain_staff_client, rows, name, args):
    assert plain_staff_client.get(reverse(name, args=args)).status_code == 403


def test_pages_send_anonymous_users_to_the_login(client, rows):
    response = client.get(reverse("admin:audit_predictionlog_compare"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_nobody_may_add_change_or_delete_even_a_superuser(client, rows):
    client.force_login(User.objects.create_superuser("root", password="pw"))
    row = rows["p1"]
    assert client.get(reverse("admin:audit_predictionlog_add")).status_code == 403
    assert client.get(reverse("admin:audit_predictionlog_delete", args=[row.pk])).status_code == 403
    detail = client.get(reverse("admin:audit_predictionlog_change", args=[row.pk]))
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    client.post(reverse("admin:audit_predictionlog_change", args=[row.pk]), {"score": "0.9"})
    assert PredictionLog.objects.get(pk=row.pk).score == row.score
    changelist = client.get(reverse("admin:audit_predictionlog_changelist"))
    assert b"delete_selected" not in changelist.content


def test_detail_shows_the_shadow_comparison_both_ways(auditor_client, rows):
    primary = auditor_client.get(reverse("admin:audit_predictionlog_change", args=[rows["p2"].pk])).content.decode()
    assert str(rows["s2"].pk) in primary and "significant" in primary
    shadow = auditor_client.get(reverse("admin:audit_predictionlog_change", args=[rows["s2"].pk])).content.decode()
    assert str(rows["p2"].pk) in shadow and "decisions differ" in shadow


def test_search_by_prediction_id_and_event_id(auditor_client, rows):
    url = reverse("admin:audit_predictionlog_changelist")
    by_id = auditor_client.get(url, {"q": str(rows["p3"].pk)})
    assert list(by_id.context["cl"].result_list) == [rows["p3"]]
    by_event = auditor_client.get(url, {"q": "e3"})
    assert {r.pk for r in by_event.context["cl"].result_list} == {rows["p3"].pk, rows["s3"].pk}


def test_changelist_export_streams_exactly_the_filtered_rows(auditor_client, rows):
    query = {"role__exact": "production", "model_version__id__exact": str(rows["p1"].model_version_id)}
    expected = {str(rows[name].pk) for name in ("p1", "p2", "p3", "p4", "p5", "old")}
    changelist = auditor_client.get(reverse("admin:audit_predictionlog_changelist"), query).content.decode()
    assert "export/ndjson/?" in changelist and "role__exact=production" in changelist

    ndjson = auditor_client.get(reverse("admin:audit_predictionlog_export", args=["ndjson"]), query)
    assert ndjson.streaming and ndjson["Content-Type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in b"".join(ndjson.streaming_content).splitlines()]
    assert {line["prediction_id"] for line in lines} == expected

    response = auditor_client.get(reverse("admin:audit_predictionlog_export", args=["csv"]), query)
    assert response.streaming
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["prediction_id"] for row in table} == expected
    assert orjson.loads(table[0]["features"])["amount"] == 12.5


def test_export_action_streams_the_selected_rows(auditor_client, rows):
    selected = [str(rows["c1"].pk), str(rows["c2"].pk)]
    response = auditor_client.post(
        reverse("admin:audit_predictionlog_changelist"), {"action": "export_ndjson", "_selected_action": selected}
    )
    assert response.streaming
    assert {orjson.loads(line)["prediction_id"] for line in b"".join(response.streaming_content).splitlines()} == set(selected)


def test_compare_page_shows_the_api_figures_and_a_chart(auditor_client, rows):
    response = auditor_client.get(reverse("admin:audit_predictionlog_compare"), {"product": "fraud_score", "window": "1h"})
    side = {name: data for name, data in response.context["sides"]}
    assert side["Production"]["requests"] == 4 and side["Canary"]["requests"] == 4
    assert side["Canary"]["error_rate"]["value"] == pytest.approx(0.25)
    body = response.content.decode()
    assert '<svg id="score-chart"' in body and body.count("<rect") == 20


def test_dual_run_records_are_listed_read_only_for_auditors(client, production_version):
    from django.utils import timezone

    from audit.models import DualRunRecord

    DualRunRecord.objects.create(
        run_id="run-1", product="fraud_score", event_id="evt-9", features={}, fast_model=production_version,
        errors=[{"model": "full", "code": "timeout", "message": "took longer than 2 s"}], created_at=timezone.now(),
    )  # fmt: skip
    user = User.objects.create_user("dual-auditor", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_dualrunrecord"))
    client.force_login(user)
    changelist = client.get(reverse("admin:audit_dualrunrecord_changelist"))
    assert changelist.status_code == 200
    assert b"full: timeout" in changelist.content
    record = DualRunRecord.objects.get()
    assert client.post(reverse("admin:audit_dualrunrecord_change", args=[record.pk]), {"run_id": "changed"}).status_code == 403
