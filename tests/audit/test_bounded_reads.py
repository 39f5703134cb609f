"""Every read of the log is bounded: the admin's keyset pages and estimated count, streamed
exports in keyset chunks, and lookups by id pruned to the id's own time."""

from datetime import timedelta

import orjson
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit import exports, services
from audit.models import PredictionLog
from audit.selectors import pages
from tests.audit.conftest import make_record, uuid7_at

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:audit_predictionlog_changelist"


@pytest.fixture
def log(production_version):
    """127 rows over three days, several of them sharing an instant (the keyset's tie-break)."""
    now = timezone.now().replace(microsecond=0)
    moments = [now - timedelta(minutes=37 * n) for n in range(100)] + [now - timedelta(hours=5)] * 27
    rows = [PredictionLog(**make_record(production_version, created_at=moment, prediction_id=uuid7_at(moment))) for moment in moments]
    PredictionLog.objects.bulk_create(rows)
    return sorted(rows, key=lambda r: (r.created_at, r.prediction_id), reverse=True)


def log_queries(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "audit_predictionlog" in q["sql"]]


def test_the_changelist_counts_nothing_and_skips_nothing(auditor_client, log):
    older = None
    with CaptureQueriesContext(connection) as captured:
        for _ in range(3):  # the first page and two deeper ones
            response = auditor_client.get(reverse(CHANGELIST) + (older or ""))
            assert response.status_code == 200
            older = response.context["cl"].older_link()
    sql = log_queries(captured)
    assert sql and not [q for q in sql if "OFFSET" in q.upper()]
    if connection.vendor == "postgresql":  # SQLite, the small embedded default, counts
        assert not [q for q in sql if "COUNT(" in q.upper()]


def test_keyset_pages_walk_every_row_once_in_order_and_back(auditor_client, log):
    seen, pages_seen, link = [], [], ""
    while link is not None:
        response = auditor_client.get(reverse(CHANGELIST) + link)
        page = [row.pk for row in response.context["cl"].result_list]
        seen += page
        pages_seen.append(page)
        link = response.context["cl"].older_link()
    assert seen == [row.pk for row in log]
    assert [len(p) for p in pages_seen] == [50, 50, 27]
    assert "older ›" not in response.content.decode() and "‹ newer" in response.content.decode()

    back, link = [], response.context["cl"].newer_link()
    while link is not None:
        response = auditor_client.get(reverse(CHANGELIST) + link)
        back.append([row.pk for row in response.context["cl"].result_list])
        link = response.context["cl"].newer_link()
    assert back == pages_seen[-2::-1]


def test_pages_keep_the_filters_and_a_bad_cursor_starts_over(auditor_client, log, canary_version):
    PredictionLog.objects.bulk_create([PredictionLog(**make_record(canary_version, role="canary")) for _ in range(3)])
    first = auditor_client.get(reverse(CHANGELIST), {"role__exact": "production"})
    link = first.context["cl"].older_link()
    assert "role__exact=production" in link
    second = auditor_client.get(reverse(CHANGELIST) + link)
    assert {row.role for row in second.context["cl"].result_list} == {"production"}
    assert auditor_client.get(reverse(CHANGELIST), {"older": "yesterday"}).status_code == 302  # the admin's "?e=1"


def test_filters_that_would_scan_the_log_are_refused(auditor_client, log):
    assert auditor_client.get(reverse(CHANGELIST), {"decision__exact": "block"}).status_code == 400
    assert auditor_client.get(reverse(CHANGELIST), {"request_id": "r-1"}).status_code == 400


@pytest.mark.usefixtures("postgresql")
def test_the_changelist_shows_the_planners_estimate(auditor_client, log):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_predictionlog")
    estimate = auditor_client.get(reverse(CHANGELIST)).context["cl"].result_count
    assert abs(estimate - len(log)) <= len(log) * 0.1
    assert f"about {estimate} prediction logs" in auditor_client.get(reverse(CHANGELIST)).content.decode()


def test_search_by_a_prediction_id_finds_it(auditor_client, log):
    response = auditor_client.get(reverse(CHANGELIST), {"q": str(log[60].pk)})
    assert [row.pk for row in response.context["cl"].result_list] == [log[60].pk]


def test_an_export_emits_every_row_once_newest_first_in_chunks(log, settings):
    settings.AUDIT_EXPORT_CHUNK = 10
    with CaptureQueriesContext(connection) as captured:
        lines = [orjson.loads(line) for line in exports.iter_ndjson(PredictionLog.objects.all())]
    assert [line["prediction_id"] for line in lines] == [str(row.pk) for row in log]
    sql = log_queries(captured)
    assert len(sql) == len(log) // 10 + 1 and not [q for q in sql if "OFFSET" in q.upper()]


def test_the_export_command_writes_every_row_in_the_window(log, settings, tmp_path, capsys):
    settings.AUDIT_EXPORT_CHUNK = 7
    call_command("audit_export", "--since", "2d", "--format", "csv", "--output", str(tmp_path / "log.csv"))
    expected = [str(row.pk) for row in log if row.created_at >= timezone.now() - timedelta(days=2)]
    written = [line.split(",", 1)[0] for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert written == expected
    assert f"exported {len(expected)} rows" in capsys.readouterr().err


@pytest.mark.usefixtures("postgresql")
def test_a_lookup_by_a_time_ordered_id_reads_one_or_two_partitions(log):
    services.prediction_log_partitions_ensure(ahead_days=3, days=1, now=timezone.now() - timedelta(days=3))
    target = log[90]
    plan = pages.by_prediction_id(PredictionLog.objects.all(), target.pk).explain()
    scanned = {word for word in plan.replace("(", " ").split() if word.startswith("audit_predictionlog_")}
    assert {name for name in scanned if not name.endswith(("_pkey", "_idx", "_key"))} <= {
        f"audit_predictionlog_p{(target.created_at + d):%Y%m%d}" for d in (timedelta(hours=-1), timedelta(hours=1))
    }
    assert pages.by_prediction_id(PredictionLog.objects.all(), target.pk).get() == target


def test_a_detail_page_reads_its_row_by_the_ids_time(auditor_client, log):
    with CaptureQueriesContext(connection) as captured:
        response = auditor_client.get(reverse("admin:audit_predictionlog_change", args=[log[60].pk]))
    assert response.status_code == 200 and str(log[60].pk) in response.content.decode()
    [lookup] = [q for q in log_queries(captured) if '"audit_predictionlog"."prediction_id" = ' in q]
    assert '"created_at" >=' in lookup and '"created_at" <=' in lookup
    missing = auditor_client.get(reverse("admin:audit_predictionlog_change", args=[uuid7_at(timezone.now())]))
    assert missing.status_code == 302  # the admin's "does not exist, perhaps it was deleted?"
