"""System check: the prediction log's immutability triggers are in the database.

On SQLite a later migration that alters ``audit_predictionlog`` rebuilds the table and drops
its triggers silently; this check says so instead of letting the log become mutable. It runs
only when checks are asked to look at databases (``manage.py check --database default``,
``migrate``), like Django's own database checks.
"""

from django.core.checks import Error, register
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.db.utils import DatabaseError

MIGRATION = "0003_predictionlog_immutable"
TRIGGERS = {"audit_predictionlog_no_update", "audit_predictionlog_no_delete"}


def _present(connection) -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_predictionlog'::regclass AND NOT tgisinternal",
            )
        elif connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_predictionlog'")
        else:
            return set(TRIGGERS)
        return {row[0] for row in cursor.fetchall()}


@register("database")
def check_immutability_triggers(app_configs=None, databases=None, **kwargs):
    errors = []
    for alias in databases or []:
        connection = connections[alias]
        try:
            if ("audit", MIGRATION) not in MigrationRecorder(connection).applied_migrations():
                continue  # not migrated yet: migrate creates them
            missing = TRIGGERS - _present(connection)
        except DatabaseError:
            continue
        if missing:
            errors.append(
                Error(
                    f"The prediction log is not immutable on database {alias!r}: trigger(s) {', '.join(sorted(missing))} missing.",
                    hint="Re-create them (audit/migrations/0003_predictionlog_immutable.py); a table rebuild on SQLite drops triggers.",
                    id="audit.E001",
                )
            )
    return errors
