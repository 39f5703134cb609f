"""``manage.py audit_export --since 7d --product fraud_score --format csv --output log.csv``.

Streams rows newest first; without ``--output`` writes to standard output.
"""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import ValidationError

from audit import exports, selectors
from audit.serializers import SinceField


class Command(BaseCommand):
    help = "Export prediction log rows as NDJSON or CSV (streamed)."

    def add_arguments(self, parser):
        parser.add_argument("--since", default="24h", help="ISO 8601 datetime or a duration back from now (24h, 7d). Default 24h.")
        parser.add_argument("--product", help="Only this product.")
        parser.add_argument("--format", dest="fmt", choices=["ndjson", "csv"], default="ndjson")
        parser.add_argument("--output", type=Path, help="File to write (default: standard output).")

    def handle(self, *args, since: str, product: str | None, fmt: str, output: Path | None, **options):
        try:
            start = SinceField().to_internal_value(since)
        except ValidationError as exc:
            raise CommandError(f"--since: {exc.detail[0]}") from None
        rows = selectors.rows_in_window(product=product, since=start)
        chunks = 0
        handle = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        try:
            for chunk in exports.iter_export(rows, fmt):
                handle.write(chunk if isinstance(chunk, bytes) else chunk.encode())
                chunks += 1
        finally:
            if output:
                handle.close()
            else:
                handle.flush()
        if output:
            rows_written = chunks - 1 if fmt == "csv" else chunks  # CSV starts with its header
            self.stderr.write(f"exported {rows_written} rows to {output}")
