"""Serving workers report which configuration they serve; the roles that see rollouts see them too."""

from django.db import migrations, models


def sync_roles(apps, schema_editor):
    from mlops.services.roles import roles_sync

    roles_sync(apps=apps, strict=False)


class Migration(migrations.Migration):

    dependencies = [
        ('mlops', '0006_sync_roles'),
    ]

    operations = [
        migrations.CreateModel(
            name='ServingWorker',
            fields=[
                ('worker', models.CharField(help_text='"<hostname>:<pid>"', max_length=300, primary_key=True, serialize=False)),
                ('hostname', models.CharField(max_length=255)),
                ('pid', models.PositiveIntegerField()),
                ('started_at', models.DateTimeField(help_text="When this process's serving runtime started.")),
                ('seen_at', models.DateTimeField(db_index=True, help_text='When the process last reported.')),
                ('generation', models.BigIntegerField(help_text='The serving configuration generation of its snapshot.')),
                ('routes', models.JSONField(default=dict, help_text='Per product: {"production": label, "canary": label or null, "canary_percent": float, "shadow": label or null}.')),
            ],
            options={
                'ordering': ['hostname', 'pid'],
            },
        ),
        migrations.RunPython(sync_roles, migrations.RunPython.noop, elidable=False),
    ]
