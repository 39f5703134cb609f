"""Base of the platform's management commands: failures end in one readable line, never a traceback."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError


class OperatorCommand(BaseCommand):
    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except DatabaseError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"database error: {first_line} (is the database reachable and migrated? `manage.py migrate`)") from None
