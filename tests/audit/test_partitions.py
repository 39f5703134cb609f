"""PostgreSQL: the prediction log is partitioned by day; partitions come ahead, keep every row,
refuse changes like the table, and retention drops the old ones whole."""

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit import partitions, services
from audit.guard import runner
from audit.logstore import PostgresCopyStore
from audit.models import PredictionLog
from tests.audit.conftest import make_record, make_rows

pytestmark = pytest.mark.usefixtures("postgresql")

DAY = timedelta(days=1)


def midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def covering(moment: datetime) -> str:
    """The name of the partition that holds a row made at ``moment``."""
    [name] = [p.name for p in partitions.listing() if p.start is not None and p.start <= moment < p.end] or [partitions.DEFAULT]
    return name


def holder(prediction_id) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM audit_predictionlog WHERE prediction_id = %s", [prediction_id])
        return cursor.fetchone()[0]


def ensure(now: datetime, ahead_days: int = 0) -> list[str]:
    return services.prediction_log_partitions_ensure(ahead_days=ahead_days, days=1, now=now)


def test_the_log_is_partitioned_with_days_ahead_and_a_default(db, settings):
    today = midnight(timezone.now())
    ensure(today, settings.AUDIT_PARTITIONS_AHEAD)
    listed = partitions.listing()
    days = {p.start for p in listed if p.start is not None}
    assert {today + n * DAY for n in range(settings.AUDIT_PARTITIONS_AHEAD + 1)} <= days
    assert listed[-1].name == partitions.DEFAULT and listed[-1].start is None


def test_partitions_are_created_ahead_once(db):
    later = midnight(timezone.now()) + 200 * DAY
    created = ensure(later, ahead_days=2)
    assert created == [f"audit_predictionlog_p{later + n * DAY:%Y%m%d}" for n in range(3)]
    assert ensure(later, ahead_days=2) == []


def test_wider_partitions_fill_only_the_gaps(db):
    start = midnight(timezone.now()) + 300 * DAY
    ensure(start + 3 * DAY)  # one day already there, in the middle of the first week
    created = services.prediction_log_partitions_ensure(ahead_days=10, days=7, now=start)
    spans = [(p.start, p.end) for p in partitions.listing() if p.name in created]
    covered = sorted([*spans, (start + 3 * DAY, start + 4 * DAY)])
    assert all(a_end == b_start for (_, a_end), (b_start, _) in itertools.pairwise(covered))  # no gap, no overlap
    assert covered[0][0] <= start and covered[-1][1] >= start + 11 * DAY


def refused(sql: str, params=()) -> None:
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_update_and_delete_are_refused_on_the_partitions_themselves(production_version):
    now = timezone.now()
    ensure(now)
    dated, early = make_rows(production_version, created_at=now)[0], make_rows(production_version, created_at=now + 400 * DAY)[0]
    assert (holder(dated.pk), holder(early.pk)) == (covering(now), partitions.DEFAULT)
    for row in (dated, early):
        table = holder(row.pk)
        refused(f"UPDATE {table} SET score = 0.99 WHERE prediction_id = %s", [row.pk])  # noqa: S608
        refused(f"DELETE FROM {table} WHERE prediction_id = %s", [row.pk])  # noqa: S608
    refused("DELETE FROM audit_predictionlog")
    assert PredictionLog.objects.count() == 2


def test_a_row_for_a_day_without_a_partition_is_kept_and_moves_into_its_new_partition(production_version):
    day = midnight(timezone.now()) + 500 * DAY
    [row] = make_rows(production_version, created_at=day + timedelta(hours=5))
    [later] = make_rows(production_version, created_at=day + 100 * DAY)
    assert holder(row.pk) == holder(later.pk) == partitions.DEFAULT

    [created] = ensure(day)

    assert (holder(row.pk), holder(later.pk)) == (created, partitions.DEFAULT)
    assert set(PredictionLog.objects.values_list("pk", "score")) == {(row.pk, row.score), (later.pk, later.score)}
    refused("DELETE FROM audit_predictionlog_default")  # the move lifted the guard only for itself


def test_retention_drops_whole_partitions_and_deletes_only_the_rows_before_the_cutoff(production_version):
    now = timezone.now()
    cutoff = now - 30 * DAY
    ensure(cutoff - 12 * DAY, ahead_days=12)  # the twelve days before the cutoff's and the cutoff's own
    old = make_rows(production_version, 3, created_at=cutoff - 5 * DAY)
    straddling_old = make_rows(production_version, 1, created_at=cutoff - timedelta(minutes=1))
    straddling_young = make_rows(production_version, 1, created_at=cutoff + timedelta(minutes=1))
    young = make_rows(production_version, 2, created_at=now)
    whole = [p.name for p in partitions.listing() if p.end is not None and p.end <= cutoff]
    assert covering(old[0].created_at) in whole and covering(cutoff) not in whole

    dry = services.prediction_log_retention_delete(older_than=30 * DAY, dry_run=True, now=now)
    assert (dry.matched, dry.deleted, set(dry.partitions)) == (4, 0, set(whole))
    assert PredictionLog.objects.count() == 7 and {p.name for p in partitions.listing()} >= set(whole)

    result = services.prediction_log_retention_delete(older_than=30 * DAY, now=now)

    assert (result.matched, result.deleted, set(result.partitions)) == (4, 4, set(whole))
    assert not {p.name for p in partitions.listing()} & set(whole)
    assert set(PredictionLog.objects.values_list("pk", flat=True)) == {r.pk for r in straddling_young + young}
    assert not PredictionLog.objects.filter(pk__in=[r.pk for r in old + straddling_old]).exists()
    refused("DELETE FROM audit_predictionlog")


def test_the_retention_command_reports_the_partitions_and_keeps_its_permission_check(production_version, capsys):
    ensure(timezone.now() - 100 * DAY)
    make_rows(production_version, 2, created_at=timezone.now() - 100 * DAY)
    User.objects.create_user("clerk")
    with pytest.raises(CommandError, match="purge_predictionlog"):
        call_command("audit_retention", "--older-than", "90", "--user", "clerk")
    call_command("audit_retention", "--older-than", "90", "--dry-run")
    assert "2 prediction log rows" in capsys.readouterr().out and PredictionLog.objects.count() == 2
    call_command("audit_retention", "--older-than", "90")
    out = capsys.readouterr().out
    assert out.startswith("deleted 2 prediction log rows") and covering(timezone.now()) not in out
    assert f"audit_predictionlog_p{timezone.now() - 100 * DAY:%Y%m%d}" in out
    assert PredictionLog.objects.count() == 0


def test_the_partitions_command_lists_and_refuses_bad_input(db, capsys):
    call_command("audit_partitions", "--ahead", "3", "--list")
    out = capsys.readouterr().out
    assert f"audit_predictionlog_p{timezone.now() + 3 * DAY:%Y%m%d}" in out and partitions.DEFAULT in out
    with pytest.raises(CommandError, match="--ahead"):
        call_command("audit_partitions", "--ahead", "-1")


def test_the_writer_replaying_the_same_records_inserts_them_once(transactional_db, production_version):
    now = timezone.now()
    ensure(now)
    records = [make_record(production_version, created_at=when) for when in (now, now - 700 * DAY, now + 700 * DAY)]
    store = PostgresCopyStore()
    try:
        assert store.insert(records) == 3
        assert store.insert(records) == 0  # COPY collides, the ON CONFLICT path inserts nothing
        assert store.insert(records, idempotent=True) == 0
    finally:
        store.close()
    assert PredictionLog.objects.count() == 3


def test_the_guard_loop_keeps_the_partitions_ahead(transactional_db, settings):
    settings.AUDIT_PARTITIONS_AHEAD = 9
    stop = threading.Event()
    runner.run_forever(interval=60, stop=stop, use_lock=False, set_state=lambda state: state == runner.IDLE and stop.set())
    assert covering(timezone.now() + 9 * DAY) != partitions.DEFAULT


@pytest.mark.django_db(transaction=True)
def test_the_migration_converts_a_table_with_rows_and_keeps_them(production_version):
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes("audit")
    before = [("audit", "0007_drift")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'audit_predictionlog'")
            assert cursor.fetchone()[0] == "r"
        # The rows as they were then: through the model of that state, not today's code.
        OldLog = executor.loader.project_state(before).apps.get_model("audit", "PredictionLog")
        moments = [timezone.now() - 40 * DAY] * 3 + [timezone.now()] * 2
        rows = OldLog.objects.bulk_create([OldLog(**make_record(production_version, created_at=moment)) for moment in moments])
        executor = MigrationExecutor(connection)
        executor.migrate([("audit", "0008_partitioned_log")])
        with connection.cursor() as cursor:
            cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'audit_predictionlog'")
            assert cursor.fetchone()[0] == "p"
        kept = {row.pk: (row.score, row.created_at) for row in PredictionLog.objects.all()}
        assert kept == {row.pk: (row.score, row.created_at) for row in rows}
        assert {holder(row.pk) for row in rows} == {covering(row.created_at) for row in rows}
        assert partitions.DEFAULT not in {holder(row.pk) for row in rows}  # each day that held rows got its partition
        refused("DELETE FROM audit_predictionlog")
    finally:
        MigrationExecutor(connection).migrate(leaves)
