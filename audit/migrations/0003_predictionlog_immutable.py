"""The prediction log is append-only, enforced by the database itself.

PostgreSQL: BEFORE UPDATE and BEFORE DELETE row triggers raise ``restrict_violation`` (Django
raises ``IntegrityError``). A DELETE passes only when the transaction-local setting
``audit.retention_delete`` is ``on`` (``SET LOCAL``, so it dies with the transaction and can
not leak through a pooled connection); only `audit.services.prediction_log_retention_delete`
sets it. TRUNCATE is deliberately not guarded: it fires no row triggers, the test runner's
flush relies on it, and in production the application role is not granted TRUNCATE.

SQLite has no session settings, so the guard is a one-column table: the DELETE trigger passes
only while a row exists in ``audit_retention_guard``, which the retention service inserts and
removes inside its own write transaction (SQLite has one writer, so no one else sees it).

Caution for later migrations: on SQLite, Django alters a table by rebuilding it, which drops
its triggers. A migration that alters ``audit_predictionlog`` must re-run ``SQLITE_FORWARD``
afterwards (the ``audit`` system check reports missing triggers).

The SQL lives here, frozen, rather than imported from the app: a migration must keep doing
what it did when it was written.
"""

from django.db import migrations

PG_FORWARD = """
CREATE OR REPLACE FUNCTION audit_predictionlog_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('audit.retention_delete', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_predictionlog is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Rows are only removed by manage.py audit_retention.';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_predictionlog_no_update
    BEFORE UPDATE ON audit_predictionlog
    FOR EACH ROW EXECUTE FUNCTION audit_predictionlog_refuse_change();

CREATE TRIGGER audit_predictionlog_no_delete
    BEFORE DELETE ON audit_predictionlog
    FOR EACH ROW EXECUTE FUNCTION audit_predictionlog_refuse_change();
"""

PG_BACKWARD = """
DROP TRIGGER IF EXISTS audit_predictionlog_no_delete ON audit_predictionlog;
DROP TRIGGER IF EXISTS audit_predictionlog_no_update ON audit_predictionlog;
DROP FUNCTION IF EXISTS audit_predictionlog_refuse_change();
"""

SQLITE_FORWARD = [
    "CREATE TABLE IF NOT EXISTS audit_retention_guard (id INTEGER PRIMARY KEY)",
    """
    CREATE TRIGGER audit_predictionlog_no_update
    BEFORE UPDATE ON audit_predictionlog
    BEGIN
        SELECT RAISE(ABORT, 'audit_predictionlog is append-only: UPDATE refused');
    END
    """,
    """
    CREATE TRIGGER audit_predictionlog_no_delete
    BEFORE DELETE ON audit_predictionlog
    WHEN NOT EXISTS (SELECT 1 FROM audit_retention_guard)
    BEGIN
        SELECT RAISE(ABORT, 'audit_predictionlog is append-only: DELETE refused');
    END
    """,
]

SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_predictionlog_no_delete",
    "DROP TRIGGER IF EXISTS audit_predictionlog_no_update",
    "DROP TABLE IF EXISTS audit_retention_guard",
]


def _run(schema_editor, statements) -> None:
    for statement in statements:
        schema_editor.execute(statement, params=None)  # None: no placeholder parsing ("%" in RAISE)


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, [PG_FORWARD])
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_FORWARD)
    else:  # pragma: no cover - the platform supports PostgreSQL and SQLite only
        raise RuntimeError(f"no immutability triggers for database vendor {vendor!r}")


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, [PG_BACKWARD])
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_permissions")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
