"""``manage.py audit_rollup --rebuild [--since ISO] [--until ISO]``: recount the rollups from the raw rows.

For after a restore, or after rows were loaded without the log writer (which keeps the rollups as it
writes). Whole hours are recounted, idempotently: running it twice gives the same rollups. Without
``--since`` it starts at the oldest row; without ``--until`` it ends now.
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from audit.models import PredictionLog
from audit.rollups.services import rollups_rebuild
from audit.serializers import SinceField


def _moment(option: str, text: str):
    try:
        return SinceField().to_internal_value(text)
    except ValidationError as exc:
        raise CommandError(f"{option}: {exc.detail[0]}") from None


class Command(BaseCommand):
    help = "Recompute the prediction log's per-minute and per-hour rollups from its rows."

    def add_arguments(self, parser):
        parser.add_argument("--rebuild", action="store_true", required=True, help="Recount the rollups of the window from the raw rows.")
        parser.add_argument("--since", help="ISO 8601 datetime or a duration back from now (24h, 7d). Default: the oldest row.")
        parser.add_argument("--until", help="ISO 8601 datetime or a duration back from now. Default: now.")

    def handle(self, *args, rebuild: bool, since: str | None, until: str | None, **options):
        end = _moment("--until", until) if until else timezone.now()
        if since:
            start = _moment("--since", since)
        else:
            oldest = PredictionLog.objects.order_by("created_at").values_list("created_at", flat=True).first()
            if oldest is None:
                self.stdout.write("the prediction log is empty: nothing to recount")
                return
            start = oldest
        if start >= end:
            raise CommandError(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})")
        result = rollups_rebuild(since=start, until=end)
        self.stdout.write(
            f"recounted {result.rows} rows into the rollups of {result.hours} hours "
            f"from {result.since.isoformat()} to {result.until.isoformat()}"
        )
