"""``manage.py import_outcomes FILE [--format csv|ndjson] [--source NAME]``: ground truth in bulk.

CSV needs a header with ``product``, ``event_id``, ``label`` and optionally ``observed_at``,
``prediction_id``, ``source``; NDJSON one such object per line. Every line is checked before
anything is written: the first bad line stops the import with one readable error line and a
non-zero exit, and nothing is imported.
"""

import csv
from pathlib import Path

import orjson
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit import services
from audit.serializers import OutcomeInputSerializer

_FORMATS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}


def _describe(errors: dict) -> str:
    return "; ".join(f"{field}: {' '.join(str(m) for m in messages)}" for field, messages in errors.items())


def _lines(path: Path, fmt: str):
    """(line number, raw item) pairs; raises CommandError on unreadable input."""
    with open(path, encoding="utf-8", newline="") as handle:
        if fmt == "csv":
            reader = csv.DictReader(handle)
            missing = {"product", "event_id", "label"} - set(reader.fieldnames or [])
            if missing:
                raise CommandError(f"{path}: the CSV header lacks {', '.join(sorted(missing))}")
            for row in reader:
                yield reader.line_num, {key: value for key, value in row.items() if value not in ("", None)}
        else:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    item = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise CommandError(f"{path}:{number}: not JSON ({exc})") from None
                if not isinstance(item, dict):
                    raise CommandError(f"{path}:{number}: expected a JSON object")
                yield number, item


class Command(BaseCommand):
    help = "Import outcomes (ground truth) from a CSV or NDJSON file."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", dest="fmt", choices=["csv", "ndjson"], help="Default: from the file extension.")
        parser.add_argument("--source", default="import", help="Source recorded for lines that name none (default: import).")

    def handle(self, *args, file: Path, fmt: str | None, source: str, **options):
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        fmt = fmt or _FORMATS.get(file.suffix.lower())
        if fmt is None:
            raise CommandError(f"{file}: unknown extension; pass --format csv or --format ndjson")
        with open(file, "rb") as handle:
            total = sum(1 for line in handle if line.strip()) - (1 if fmt == "csv" else 0)
        items = []
        progress = tqdm(total=max(total, 0), desc="checking", unit="line", disable=options.get("verbosity", 1) < 1, file=self.stderr._out)
        with progress:
            for number, raw in _lines(file, fmt):
                serializer = OutcomeInputSerializer(data=raw)
                if not serializer.is_valid():
                    raise CommandError(f"{file}:{number}: {_describe(serializer.errors)}")
                items.append({"source": source, **serializer.validated_data})
                progress.update()
        recorded = services.outcomes_record(items=items, source_default=source)
        self.stdout.write(f"imported {recorded} outcomes from {file}")
