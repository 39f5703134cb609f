"""Prediction ids: random (version 4) UUIDs, drawn from a per-thread buffer of OS randomness.

``uuid.uuid4()`` makes one ``urandom`` system call per id, and every system call releases the
GIL: on a busy worker the request thread then waits for another thread (log writer, shadow) to
hand the GIL back, up to the interpreter's switch interval (5 ms). One call per 256 ids keeps
that off nearly every request; the ids are as unpredictable as ``uuid4``'s.
"""

import os
import threading
import uuid

_BATCH = 256
_local = threading.local()


def new_prediction_id() -> uuid.UUID:
    buffer = getattr(_local, "buffer", b"")
    offset = getattr(_local, "offset", 0)
    if offset >= len(buffer):
        buffer, offset = os.urandom(16 * _BATCH), 0
        _local.buffer = buffer
    _local.offset = offset + 16
    return uuid.UUID(bytes=buffer[offset : offset + 16], version=4)
