"""Record which API client asked for each prediction, so clients read back only their own.

On SQLite, Django adds the column by rebuilding the table, which drops its immutability
triggers: they are created again right after (the SQL frozen in 0003).
"""

from importlib import import_module

from django.db import migrations, models

immutable = import_module("audit.migrations.0003_predictionlog_immutable")


def recreate_sqlite_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        immutable._run(schema_editor, immutable.SQLITE_FORWARD[1:])  # [0] is the guard table, which survives


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_dual_run_record")]

    operations = [
        migrations.AddField(
            model_name="predictionlog",
            name="client",
            field=models.CharField(blank=True, help_text="The API client that asked; clients read only their own.", max_length=200),
        ),
        migrations.RunPython(recreate_sqlite_triggers, migrations.RunPython.noop, elidable=False),
    ]
