"""Streaming exports of prediction log rows (admin downloads and ``manage.py audit_export``).

Rows are read newest first in keyset chunks of ``AUDIT_EXPORT_CHUNK`` (`audit.selectors.pages.chunks`:
each chunk a short indexed query that starts after the last row of the one before, rather than one
server-side cursor held open, with its snapshot, for the whole export) and written one at a time,
so an export of millions of rows never sits in memory: the admin streams it through
``StreamingHttpResponse``.
"""

import csv
from collections.abc import Iterator

import orjson
from django.conf import settings
from django.db.models import QuerySet

from audit.records import EXPORT
from audit.selectors import pages

_JSON_FIELDS = {"features", "explain_summary"}
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def _rows(queryset: QuerySet) -> Iterator[dict]:
    for chunk in pages.chunks(queryset.values(*EXPORT), size=settings.AUDIT_EXPORT_CHUNK):
        yield from chunk


def iter_ndjson(queryset: QuerySet) -> Iterator[bytes]:
    for row in _rows(queryset):
        yield orjson.dumps(row, default=str) + b"\n"


class _Line:
    """A file-like object for csv.writer that hands back each line instead of storing it."""

    def write(self, value: str) -> str:
        return value


def iter_csv(queryset: QuerySet) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(EXPORT)
    for row in _rows(queryset):
        yield writer.writerow([orjson.dumps(row[f]).decode() if f in _JSON_FIELDS else ("" if row[f] is None else row[f]) for f in EXPORT])


def iter_export(queryset: QuerySet, fmt: str):
    if fmt == "ndjson":
        return iter_ndjson(queryset)
    if fmt == "csv":
        return iter_csv(queryset)
    raise ValueError(f"unknown export format {fmt!r}; use ndjson or csv")
