"""``manage.py audit_partitions [--ahead DAYS] [--list]``: create the prediction log's partitions ahead.

The guard process does the same every turn (`audit.guard.runner`); this command is for a
deployment that runs no guard, and for looking (``--list``). PostgreSQL only: SQLite keeps one table.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import partitions, services


class Command(BaseCommand):
    help = "Create the prediction log's partitions DAYS days ahead (PostgreSQL), or list them."

    def add_arguments(self, parser):
        parser.add_argument("--ahead", type=int, metavar="DAYS", help="Days ahead of today to cover (default AUDIT_PARTITIONS_AHEAD).")
        parser.add_argument("--list", action="store_true", help="List the partitions with their bounds and estimated rows.")

    def handle(self, *args, ahead: int | None, list: bool, **options):
        if not partitions.partitioned():
            raise CommandError("the prediction log is partitioned on PostgreSQL only; this database keeps one table")
        ahead = settings.AUDIT_PARTITIONS_AHEAD if ahead is None else ahead
        if ahead < 0:
            raise CommandError("--ahead must be 0 or more days")
        try:
            created = services.prediction_log_partitions_ensure(ahead_days=ahead, days=settings.AUDIT_PARTITION_DAYS)
        except ValueError as exc:
            raise CommandError(f"AUDIT_PARTITION_DAYS: {exc}") from None
        for name in created:
            self.stdout.write(f"created {name}")
        if list:
            for partition in partitions.listing():
                bounds = "DEFAULT" if partition.start is None else f"{partition.start.isoformat()} .. {partition.end.isoformat()}"
                self.stdout.write(f"{partition.name}  {bounds}  ~{max(partition.rows_estimate, 0)} rows")
        else:
            self.stdout.write(f"{len(created)} partitions created; the log is covered {ahead} days ahead")
