"""The spill folder: NDJSON files holding prediction log records the database could not take.

File life cycle (one writer process owns a file while it is open):

- ``spill-<host>-<pid>-<utc time>-<n>.ndjson.part``: being appended to by process ``pid``; each
  batch is written, flushed and fsynced before the writer moves on.
- ``....ndjson``: closed (rotated at ``AUDIT_SPILL_MAX_BYTES``, or closed because the database
  is back); ready for replay.
- ``....ndjson.replaying-<host>-<pid>``: claimed by one replaying process (an atomic rename, so two
  workers never replay the same file at once); deleted once every record is in the database.

A ``.part`` or ``.replaying`` file whose process is gone (same host, pid not alive) is stale
and claimable again. Replays are idempotent (the prediction id is the primary key), so a file
replayed twice after a crash does no harm. Files the database refuses for bad data go to
``rejected/`` and are never replayed automatically.
"""

import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

logger = logging.getLogger(__name__)

HOST = socket.gethostname().replace("-", "_")


def dumps(record: dict) -> bytes:
    return orjson.dumps(record, default=str, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


class SpillFile:
    """Appends batches to the current ``.part`` file, rotating it by size. Thread-safe."""

    def __init__(self, folder: Path, *, max_bytes: int):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self._file = None
        self._path: Path | None = None
        self._size = 0
        self._seq = 0

    @property
    def is_open(self) -> bool:
        return self._file is not None

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self._path = self.folder / f"spill-{HOST}-{os.getpid()}-{stamp}-{self._seq}.ndjson.part"
        self._file = open(self._path, "ab")  # noqa: SIM115 - kept open across batches
        self._size = self._path.stat().st_size

    def append(self, records: list[dict], *, fsync: bool = True) -> Path:
        """Append ``records`` (caller holds ``lock``); returns the file written. Raises OSError."""
        if self._file is None:
            self._open()
        data = b"".join(dumps(record) for record in records)
        self._file.write(data)
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())
        self._size += len(data)
        path = self._path
        if self._size >= self.max_bytes:
            self.close()
        return path

    def close(self) -> Path | None:
        """Close the current file and make it replayable (caller holds ``lock``)."""
        if self._file is None:
            return None
        path = self._path
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        finally:
            self._file = None
            self._path = None
        closed = path.with_name(path.name.removesuffix(".part"))
        os.replace(path, closed)
        return closed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of the process that has a ``.part`` / ``.replaying-host-pid`` file, if any."""
    try:
        if ".replaying-" in name:
            host, pid = name.rsplit(".replaying-", 1)[1].rsplit("-", 1)
            return host, int(pid)
        if name.endswith(".part"):
            _, host, pid, *_ = name.split("-")
            return host, int(pid)
    except ValueError:
        return None
    return None


def replayable(folder: Path) -> list[Path]:
    """Spill files ready for replay: closed ones, and stale ones of dead processes on this host."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    ready = []
    for path in sorted(folder.glob("spill-*.ndjson*")):
        if path.name.endswith(".ndjson"):
            ready.append(path)
            continue
        owner = _owner(path.name)
        if owner and owner[0] == HOST and owner[1] != os.getpid() and not _pid_alive(owner[1]):
            ready.append(path)
    return ready


def claim(path: Path) -> Path | None:
    """Atomically take ``path`` for replay by this process; None if someone else took it first."""
    base = path.name.split(".ndjson", 1)[0] + ".ndjson"
    claimed = path.with_name(f"{base}.replaying-{HOST}-{os.getpid()}")
    if path == claimed:
        return claimed
    try:
        os.replace(path, claimed)
    except FileNotFoundError:
        return None
    return claimed


def release(claimed: Path) -> Path:
    """Give a claimed file back (its replay failed; it will be retried)."""
    base = claimed.name.split(".ndjson", 1)[0] + ".ndjson"
    target = claimed.with_name(base)
    os.replace(claimed, target)
    return target


@dataclass
class BadLine:
    line_number: int
    error: str
    raw: bytes


def read_records(path: Path, *, chunk: int) -> Iterator[tuple[list[dict], list[BadLine]]]:
    """The file's records in chunks of ``chunk``, with the lines that are not JSON objects."""
    records: list[dict] = []
    bad: list[BadLine] = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                records.append(record)
            except ValueError as exc:
                # A torn last line (the process died mid-write) lands here too.
                bad.append(BadLine(number, str(exc), line))
            if len(records) >= chunk:
                yield records, bad
                records, bad = [], []
    if records or bad:
        yield records, bad


def write_rejected(folder: Path, source: str, lines: list[bytes]) -> Path:
    """Keep records the database refused, for a human to look at; never replayed automatically."""
    rejected = Path(folder) / "rejected"
    rejected.mkdir(parents=True, exist_ok=True)
    path = rejected / f"rejected-{HOST}-{os.getpid()}-{source}.ndjson"
    with open(path, "ab") as handle:
        for line in lines:
            handle.write(line if line.endswith(b"\n") else line + b"\n")
    return path
