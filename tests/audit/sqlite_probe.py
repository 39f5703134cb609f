"""Run in a subprocess by test_immutability: migrate a fresh SQLite database and try to change the log.

Prints one JSON object: which operations the database refused and what retention deleted.
Usage: ``DATABASE_URL=sqlite:////tmp/x.sqlite3 python tests/audit/sqlite_probe.py``
"""

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

import django

django.setup()

from django.core.management import CommandError, call_command  # noqa: E402
from django.db import DatabaseError, connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit import services  # noqa: E402
from audit.models import PredictionLog  # noqa: E402
from tests.audit.conftest import make_record, make_version  # noqa: E402

assert connection.vendor == "sqlite", connection.vendor
call_command("migrate", verbosity=0)
version = make_version()
old = PredictionLog.objects.create(**make_record(version, created_at=timezone.now() - timedelta(days=40)))
new = PredictionLog.objects.create(**make_record(version))


def refused(operation) -> bool:
    try:
        with transaction.atomic():
            operation()
    except DatabaseError:
        return True
    return False


def raw(sql: str, params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def save_changed() -> None:
    new.score = 0.99
    new.save()


results = {
    "orm_update": refused(lambda: PredictionLog.objects.filter(pk=new.pk).update(score=0.99)),
    "orm_save": refused(save_changed),
    "orm_delete": refused(lambda: PredictionLog.objects.get(pk=new.pk).delete()),
    "orm_queryset_delete": refused(lambda: PredictionLog.objects.all().delete()),
    "raw_update": refused(lambda: raw("UPDATE audit_predictionlog SET score = 0.99 WHERE prediction_id = %s", [new.pk.hex])),
    "raw_delete": refused(lambda: raw("DELETE FROM audit_predictionlog", [])),
}
result = services.prediction_log_retention_delete(older_than=timedelta(days=30))
results["retention_deleted"] = result.deleted
results["retention_partitions"] = list(result.partitions)
try:
    call_command("audit_partitions")
except CommandError as exc:
    results["partitions_command"] = str(exc)
results["remaining"] = [str(pk) for pk in PredictionLog.objects.values_list("pk", flat=True)]
results["kept"] = str(new.pk)
results["guard_rows_left"] = connection.cursor().execute("SELECT COUNT(*) FROM audit_retention_guard").fetchone()[0]
results["delete_refused_after_retention"] = refused(lambda: PredictionLog.objects.all().delete())
# The writer on SQLite goes through bulk_create (OrmStore), from its own thread.
import tempfile  # noqa: E402

from audit.writer import PredictionLogWriter  # noqa: E402

writer = PredictionLogWriter(spill_dir=Path(tempfile.mkdtemp()), interval=0.05)
writer.install_signal_handlers = False
submitted = [make_record(version) for _ in range(20)]
for record in submitted:
    writer.submit(record)
writer.close(10)
results["writer_store"] = type(writer._get_store()).__name__
results["writer_rows"] = PredictionLog.objects.filter(pk__in=[r["prediction_id"] for r in submitted]).count()
print(json.dumps(results))
