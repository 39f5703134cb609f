"""Prediction ids: time-ordered UUIDs (version 7, RFC 9562), their random bits drawn from a
per-thread buffer of OS randomness.

Time-ordered because a worker asked for a prediction it did not answer can tell from the id
alone that it is only milliseconds old, and wait for the answering worker's log batch instead of
saying 404 (`inference.selectors.prediction_get`), and a read of the log bounds the row's
``created_at`` by it, so PostgreSQL looks in one or two day partitions
(`audit.records.issued_at_ms`, `audit.selectors.pages.by_prediction_id`); and because new rows then land at the end of
the log's primary-key index instead of at random pages.

``uuid.uuid4()`` makes one ``urandom`` system call per id, and every system call releases the
GIL: on a busy worker the request thread then waits for another thread (log writer, shadow) to
hand the GIL back, up to the interpreter's switch interval (5 ms). One call per 256 ids keeps
that off nearly every request; 74 random bits per millisecond keep the ids unguessable.
"""

import os
import threading
import time
import uuid

_BATCH = 256
_RANDOM_BYTES = 10  # 80 bits drawn, 74 used (12 "rand_a" + 62 "rand_b")
_local = threading.local()


def new_prediction_id() -> uuid.UUID:
    buffer = getattr(_local, "buffer", b"")
    offset = getattr(_local, "offset", 0)
    if offset >= len(buffer):
        buffer, offset = os.urandom(_RANDOM_BYTES * _BATCH), 0
        _local.buffer = buffer
    _local.offset = offset + _RANDOM_BYTES
    rand = int.from_bytes(buffer[offset : offset + _RANDOM_BYTES], "big")
    unix_ms = time.time_ns() // 1_000_000
    # 48 bits of milliseconds | version 7 | 12 random bits | variant 0b10 | 62 random bits
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64 | 0b10 << 62 | rand & (1 << 62) - 1
    return uuid.UUID(int=value)
