"""PII redaction of prediction log records, before they are persisted or spilled to disk.

``AUDIT_REDACT_DROP`` lists feature/payload keys removed outright; ``AUDIT_REDACT_HASH`` lists
keys whose value is replaced by a keyed hash (HMAC-SHA256 with ``AUDIT_REDACT_HASH_KEY``,
default the ``SECRET_KEY``), so equal values still group together without being readable, and
low-entropy values (e-mail addresses, phone numbers) can not be recovered by hashing guesses.
Keys match at any depth of ``features`` and at the top level of ``explain_summary`` items.
"""

import hmac
from collections.abc import Iterable

from audit.records import REQUIRED

HASH_PREFIX = "hmac-sha256:"
_CONTAINERS = (dict, list)
# Values that are neither redacted inside nor containers (exact types: a subclass takes the long way).
_SCALARS = frozenset({str, int, float, bool, type(None)})


class Redactor:
    def __init__(self, *, drop: Iterable[str] = (), hash_keys: Iterable[str] = (), hash_key: str | bytes = b""):
        self.drop = frozenset(drop)
        self.hash_keys = frozenset(hash_keys) - self.drop
        self._keys = self.drop | self.hash_keys
        self._key = hash_key.encode() if isinstance(hash_key, str) else hash_key

    @property
    def active(self) -> bool:
        return bool(self.drop or self.hash_keys)

    def hash_value(self, value) -> str:
        return HASH_PREFIX + hmac.digest(self._key, str(value).encode(), "sha256").hex()  # the C fast path

    def _clean(self, value):
        # Runs once per record and field on the writer thread: the set operations and the type
        # scan are C loops, so a flat feature dict costs a few µs whatever its size; only
        # configured keys and nested containers cost Python steps.
        if isinstance(value, dict):
            keys = self._keys.intersection(value)
            nested = not _SCALARS.issuperset(map(type, value.values()))
            if not keys and not nested:
                return value  # nothing to remove or hide: the caller's dict is never changed, so no copy
            cleaned = dict(value)
            for key in keys:
                if key in self.drop:
                    del cleaned[key]
                elif cleaned[key] is not None:
                    cleaned[key] = self.hash_value(cleaned[key])
            if nested:
                for key, item in cleaned.items():
                    if isinstance(item, _CONTAINERS):
                        cleaned[key] = self._clean(item)
            return cleaned
        if isinstance(value, list):
            if _SCALARS.issuperset(map(type, value)):
                return value
            return [self._clean(item) if isinstance(item, _CONTAINERS) else item for item in value]
        return value

    def redact(self, record: dict) -> dict:
        """A redacted shallow copy of ``record`` (the caller's dict is left alone)."""
        if not self.active:
            return record
        redacted = dict(record)
        for key in self.drop.intersection(record):
            if key not in REQUIRED:  # the log's own fields are never dropped by a payload key
                del redacted[key]
        if isinstance(record.get("features"), dict | list):
            redacted["features"] = self._clean(record["features"])
        if isinstance(record.get("explain_summary"), list):
            redacted["explain_summary"] = [self._explain_item(item) for item in record["explain_summary"]]
        return redacted

    def _explain_item(self, item):
        # Explanations name features; a dropped feature's contribution leaves with it.
        if isinstance(item, dict) and item.get("feature") in self.drop:
            return {**item, "feature": "[redacted]"}
        return self._clean(item)
