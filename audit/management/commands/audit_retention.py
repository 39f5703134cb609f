"""``manage.py audit_retention --older-than DAYS [--dry-run] [--user NAME]``: the only way rows leave the log.

On PostgreSQL whole partitions older than the cutoff are dropped, the rest deleted row by row
(`audit.services.prediction_log_retention_delete`); the line printed names the partitions.

Who may run it: whoever can run ``manage.py`` on a web host is trusted as the operator (they
hold the database credentials anyway). ``--user`` makes the command check that a named
account holds ``audit.purge_predictionlog`` first, for runbooks that want the check recorded.
"""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from audit import services


class Command(BaseCommand):
    help = "Delete prediction log rows older than DAYS days (the log's only delete path)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS", help="Delete rows made more than DAYS days ago.")
        parser.add_argument("--dry-run", action="store_true", help="Count the rows that would be deleted, delete nothing.")
        parser.add_argument("--user", help="Run as this account; it must hold audit.purge_predictionlog.")

    def handle(self, *args, older_than: int, dry_run: bool, user: str | None, **options):
        if older_than < 1:
            raise CommandError("--older-than must be at least 1 day")
        account = None
        if user:
            try:
                account = get_user_model().objects.get_by_natural_key(user)
            except get_user_model().DoesNotExist:
                raise CommandError(f"no user named {user!r}") from None
        try:
            result = services.prediction_log_retention_delete(older_than=timedelta(days=older_than), dry_run=dry_run, user=account)
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        whole = f" ({len(result.partitions)} whole partitions: {', '.join(result.partitions)})" if result.partitions else ""
        if result.dry_run:
            self.stdout.write(
                f"dry run: {result.matched} prediction log rows made before {result.cutoff.isoformat()} would be deleted{whole}"
            )
        else:
            self.stdout.write(f"deleted {result.deleted} prediction log rows made before {result.cutoff.isoformat()}{whole}")
