"""Real server processes for the tests that talk to one over TCP.

``gunicorn`` is the ``web`` process, configured by the repository's ``gunicorn.conf.py`` as in
production; ``daphne`` is the ``stream`` process, as the embedded default runs it. Each runs the
real settings on a free loopback port against this test session's PostgreSQL database::

    with servers.start("daphne", env={"DEBUG": "1"}, ready_path="/healthz") as server:
        urllib.request.urlopen(server.url + "/healthz")

``start`` returns once the server answers; ``launch`` returns at once, so that a test can boot
several servers side by side and then ``wait_until_ready`` on each.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NoReturn

import pytest
from django.conf import settings

from tests.prerequisites import needs_postgresql

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PROBE_TIMEOUT = 2  # seconds a readiness request may take; a slower answer is simply asked again
PROBE_INTERVAL = 0.1
OUTPUT_TAIL = 3000  # characters of the server's output that a failure message shows

# What production requires once DEBUG is off, but plain HTTP: the tests speak to loopback.
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "server-test-secret-key-not-for-production-0123456789",
    "ALLOWED_HOSTS": HOST,
    "SECURE_SSL_REDIRECT": "0",
}


def procfile() -> dict[str, str]:
    """The root Procfile as {process type: command}, read as honcho and foreman read it
    ("<process type>: <command>" lines): the production command of each process type."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {match[1]: match[2].strip() for match in (re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line) for line in lines) if match}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """This test session's database as a ``DATABASE_URL``; skips the test unless it is PostgreSQL
    (SQLite test databases live in the test process's memory, out of a server's reach)."""
    needs_postgresql()
    database = settings.DATABASES["default"]
    return f"postgres://{database['USER']}@{database['HOST'] or HOST}:{database['PORT'] or 5432}/{database['NAME']}"


# What makes a server this session's rather than the embedded default (tests/settings.py sets them).
SESSION_VARIABLES = ("DATABASE_URL", "REDIS_URL", "MODEL_STORE_URL", "MODEL_CACHE_DIR", "VAR_DIR", "CACHE_KEY_PREFIX", "CHANNEL_PREFIX")


def server_environment(overrides: dict[str, str | None], *, embedded: bool = False) -> dict[str, str]:
    """This session's environment (REDIS_URL, MODEL_*, CACHE_KEY_PREFIX, CHANNEL_PREFIX), the real
    settings on this session's database, then ``overrides``: an override of None unsets the variable.

    ``embedded``: none of the session's layers, as `make run` starts the platform with no
    environment (SQLite, local model folder, in-memory cache and channel layer under VAR_DIR)."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "DATABASE_URL": None if embedded else database_url(),
        "PYTHONPATH": str(ROOT),
        **({name: None for name in SESSION_VARIABLES if name != "DATABASE_URL"} if embedded else {}),
        **overrides,
    }
    return {name: value for name, value in environment.items() if value is not None}


def manage(command: Sequence[str], *, env: dict[str, str | None], embedded: bool = False, timeout: float = 120) -> str:
    """Run ``manage.py <command>`` as a server's environment sees it; its stdout, or the test fails with its output."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *command],
        cwd=ROOT,
        env=server_environment(env, embedded=embedded),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(f"manage.py {' '.join(command)} failed:\n{result.stdout[-OUTPUT_TAIL:]}{result.stderr[-OUTPUT_TAIL:]}")
    return result.stdout


def server_command(kind: str, port: int, args: Sequence[str]) -> list[str]:
    if kind == "gunicorn":
        config = str(ROOT / "gunicorn.conf.py")
        return [sys.executable, "-m", "gunicorn", "-c", config, "--bind", f"{HOST}:{port}", *args, "mlops.wsgi:application"]
    if kind == "daphne":
        return [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port), *args, "mlops.asgi:application"]
    if kind == "granian":  # the hot lane: the Procfile's `infer` line ($PORT, WEB_CONCURRENCY), on loopback
        line = procfile()["infer"].replace("0.0.0.0", HOST)
        return ["sh", "-c", f'exec {line} "$@"', "infer", *args]
    raise ValueError(f"unknown server {kind!r}: gunicorn, daphne or granian")


class Server:
    """A running server process: ``url`` is its base URL, its stdout and stderr go to ``log``."""

    def __init__(self, process: subprocess.Popen, port: int, log_file: IO[bytes]):
        self.process = process
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log = Path(log_file.name)
        self._log_file = log_file
        self._launched_at = time.monotonic()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def output(self) -> str:
        """The end of what the server has printed so far."""
        return self.log.read_text(errors="replace")[-OUTPUT_TAIL:]

    def wait_until_ready(self, path: str = "/readyz", within: float = 60) -> None:
        """Wait until GET ``path`` answers 200, at most ``within`` seconds after the launch; if the
        server exits or is not ready by then, it is killed and the test fails with its output."""
        deadline = self._launched_at + within
        while not self._answers_200(path):
            if self.process.poll() is not None:
                self._fail("server exited")
            if time.monotonic() > deadline:
                self._fail(f"server not ready within {within:g} s")
            time.sleep(PROBE_INTERVAL)

    def wait_until_every_worker_is_ready(self, in_a_row: int = 20, within: float = 60) -> None:
        """With several workers, one answering /readyz says nothing of the others: wait until
        ``in_a_row`` probes in a row (each on a new connection, which any worker may take) answer 200."""
        deadline = time.monotonic() + within
        streak = 0
        while streak < in_a_row:
            streak = streak + 1 if self._answers_200("/readyz") else 0
            if time.monotonic() > deadline:
                self._fail(f"not every worker was ready within {within:g} s")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` (gunicorn: SIGTERM shuts down gracefully, SIGINT quickly), wait up to
        ``timeout`` seconds for the process to exit, kill it if it has not; returns its exit code.
        Stopping a stopped server does nothing. The server's workers go with it: each server runs in
        a process group of its own, which a kill takes whole (a killed master would leave its
        workers running, holding the test database)."""
        self.process.send_signal(sig)  # nothing once the process has exited
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever outlived the master
        self._log_file.close()
        return self.process.returncode

    def _answers_200(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=PROBE_TIMEOUT) as response:
                return response.status == 200
        except OSError:  # not listening yet, or an error status (HTTPError)
            return False

    def _fail(self, reason: str) -> NoReturn:
        output = self.output()  # read first: stopping deletes a temporary log
        self.stop(signal.SIGKILL)
        pytest.fail(f"{reason}:\n{output}")


def launch(
    kind: str, *, env: dict[str, str | None], args: Sequence[str] = (), port: int = 0, log: Path | None = None, embedded: bool = False
) -> Server:
    """Start ``kind`` ("gunicorn" or "daphne") with ``env`` on top of `server_environment` (``embedded``:
    see there), on ``port`` (a free one by default), printing to ``log`` (a temporary file, deleted
    by ``stop``, by default); returns without waiting for it to answer."""
    port = port or free_port()
    # A file rather than a pipe: a pipe that nobody reads while the server runs fills up and blocks it.
    log_file = open(log, "wb") if log else tempfile.NamedTemporaryFile(prefix=f"{kind}-", suffix=".log")  # noqa: SIM115
    environment = server_environment(env, embedded=embedded)
    # As a Procfile runner starts a process type: its port in PORT, this venv's programs on PATH.
    environment["PORT"] = str(port)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    command = server_command(kind, port, args)
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(process, port, log_file)


def start(
    kind: str,
    *,
    env: dict[str, str | None],
    args: Sequence[str] = (),
    port: int = 0,
    log: Path | None = None,
    ready_path: str = "/readyz",
    ready_within: float = 60,
    embedded: bool = False,
) -> Server:
    """`launch`, then `Server.wait_until_ready`: a server that answers ``ready_path``."""
    server = launch(kind, env=env, args=args, port=port, log=log, embedded=embedded)
    server.wait_until_ready(ready_path, ready_within)
    return server
