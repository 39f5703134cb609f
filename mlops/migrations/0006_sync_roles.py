"""Give the role groups the permissions of the models added since 0003 (rollbacks, dual models, dual runs).

Run ``roles_sync`` again from a new migration whenever a role should see a model added later.
"""

from django.db import migrations


def sync_roles(apps, schema_editor):
    from mlops.services.roles import roles_sync

    roles_sync(apps=apps, strict=False)


class Migration(migrations.Migration):
    dependencies = [
        ("mlops", "0005_dual_model_config"),
        ("audit", "0004_dual_run_record"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop, elidable=False)]
