"""Joins the two migrations made side by side from 0007 for issue 18: the rollups (part 1) and the
partitioned log (part 2). They touch different tables, so their order does not matter."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("audit", "0008_partitioned_log"), ("audit", "0008_rollups")]

    operations = []
