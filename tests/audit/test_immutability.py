"""The prediction log refuses UPDATE and DELETE in the database itself; retention is the one way out."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit import services
from audit.models import PredictionLog
from tests.audit.conftest import make_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def row(production_version):
    return make_rows(production_version)[0]


def refused(operation) -> None:
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        operation()


def test_orm_update_is_refused(row):
    refused(lambda: PredictionLog.objects.filter(pk=row.pk).update(score=0.99))


def test_orm_save_of_a_changed_row_is_refused(row):
    row.score = 0.99
    refused(row.save)


def test_orm_delete_is_refused(row):
    refused(row.delete)
    refused(lambda: PredictionLog.objects.all().delete())


def test_raw_sql_update_and_delete_are_refused(row):
    def raw(sql, params=()):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    refused(lambda: raw("UPDATE audit_predictionlog SET decision = 'block' WHERE prediction_id = %s", [row.pk]))
    refused(lambda: raw("DELETE FROM audit_predictionlog"))
    assert PredictionLog.objects.get(pk=row.pk).decision == row.decision


def test_retention_deletes_only_rows_older_than_the_cutoff(production_version):
    old = make_rows(production_version, 3, created_at=timezone.now() - timedelta(days=31))
    young = make_rows(production_version, 2, created_at=timezone.now() - timedelta(days=29))
    dry = services.prediction_log_retention_delete(older_than=timedelta(days=30), dry_run=True)
    assert (dry.matched, dry.deleted, PredictionLog.objects.count()) == (3, 0, 5)
    result = services.prediction_log_retention_delete(older_than=timedelta(days=30), batch_size=2)
    assert result.deleted == 3
    assert set(PredictionLog.objects.values_list("pk", flat=True)) == {r.pk for r in young}
    assert not PredictionLog.objects.filter(pk__in=[r.pk for r in old]).exists()
    # The guard is lifted only inside the retention transaction.
    refused(lambda: PredictionLog.objects.all().delete())


def test_retention_command_needs_the_purge_permission_when_run_as_a_user(production_version, capsys):
    make_rows(production_version, 2, created_at=timezone.now() - timedelta(days=100))
    User.objects.create_user("clerk")
    with pytest.raises(CommandError, match="purge_predictionlog"):
        call_command("audit_retention", "--older-than", "90", "--user", "clerk")
    operator = User.objects.create_user("operator")
    operator.user_permissions.add(Permission.objects.get(codename="purge_predictionlog"))
    call_command("audit_retention", "--older-than", "90", "--dry-run", "--user", "operator")
    assert "2 prediction log rows" in capsys.readouterr().out
    assert PredictionLog.objects.count() == 2
    call_command("audit_retention", "--older-than", "90", "--user", "operator")
    assert PredictionLog.objects.count() == 0


def test_retention_service_refuses_a_user_without_permission(db):
    with pytest.raises(PermissionDenied):
        services.prediction_log_retention_delete(older_than=timedelta(days=1), user=User.objects.create_user("x"))


def test_sqlite_triggers_refuse_update_and_delete(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'log.sqlite3'}", "DJANGO_SETTINGS_MODULE": "mlops.settings"}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/audit/sqlite_probe.py")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for operation in ("orm_update", "orm_save", "orm_delete", "orm_queryset_delete", "raw_update", "raw_delete"):
        assert results[operation] is True, operation
    assert (results["retention_deleted"], results["retention_partitions"]) == (1, [])  # SQLite keeps one table
    assert "PostgreSQL only" in results["partitions_command"]
    assert results["remaining"] == [results["kept"]]
    assert results["guard_rows_left"] == 0
    assert results["delete_refused_after_retention"] is True
    assert (results["writer_store"], results["writer_rows"]) == ("OrmStore", 20)


@pytest.mark.usefixtures("postgresql")  # drops a PostgreSQL trigger (rolled back with the test)
def test_system_check_reports_missing_triggers(db):
    from audit.checks import check_immutability_triggers

    assert check_immutability_triggers(databases=["default"]) == []
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER audit_predictionlog_no_update ON audit_predictionlog")
    [error] = check_immutability_triggers(databases=["default"])
    assert error.id == "audit.E001" and "audit_predictionlog_no_update" in error.msg
