"""The platform as `make run` starts it: the embedded default in a folder of its own.

``manage.py migrate``, ``bootstrap_demo`` (the demo product and admin user) and two API keys,
then one daphne process for everything (and, if asked, a command beside it, as `make run` starts
``demo_traffic``), with none of the test session's layers in its
environment: SQLite, a local model folder and in-memory cache and channel layer, all under a
temporary VAR_DIR. Tests that speak to the platform the way its README tells users to start it
use this (the `embedded_platform` fixture of tests/e2e/conftest.py).
"""

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlops.services.demo import CREDENTIALS_FILE
from tests import servers


@dataclass(frozen=True)
class EmbeddedPlatform:
    url: str
    keys: dict[str, str]  # role -> API key: internal_service (every capability, no rate limit) and ml_ops
    admin: tuple[str, str]  # the demo admin's username and password (VAR_DIR/demo-credentials.txt)
    var_dir: Path
    server: servers.Server
    beside: subprocess.Popen | None = None  # the command started beside the server; its output in var_dir/beside.log


def _admin_credentials(var_dir: Path) -> tuple[str, str]:
    lines = dict(line.split(": ", 1) for line in (var_dir / CREDENTIALS_FILE).read_text().splitlines() if ": " in line)
    return lines["username"], lines["password"]


@contextmanager
def embedded_platform(var_dir: Path, *, env: dict[str, str | None] | None = None, beside: Sequence[str] = ()) -> Iterator[EmbeddedPlatform]:
    """The platform of `make run` under ``var_dir``, with ``env`` on top (e.g. a setting to tune).

    ``beside``: a ``manage.py`` command (``{url}`` stands for the server's URL) started at the same
    moment as the server, as `make run` starts ``demo_traffic``; it is killed if still running at the end.
    """
    environment = {"VAR_DIR": str(var_dir), **(env or {})}
    servers.manage(["migrate", "--no-input", "-v", "0"], env=environment, embedded=True)
    servers.manage(["bootstrap_demo"], env=environment, embedded=True)
    keys = {
        role: servers.manage(["create_api_key", "--client", f"e2e-{role}", "--role", role], env=environment, embedded=True).strip()
        for role in ("internal_service", "ml_ops")
    }
    port = servers.free_port()
    companion = None
    if beside:
        command = [sys.executable, str(servers.ROOT / "manage.py"), *(part.format(url=f"http://{servers.HOST}:{port}") for part in beside)]
        output = open(var_dir / "beside.log", "w")  # noqa: SIM115 - a file, not a pipe nobody reads while it runs
        companion = subprocess.Popen(
            command, cwd=servers.ROOT, env=servers.server_environment(environment, embedded=True), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        with servers.start("daphne", env=environment, embedded=True, port=port, log=var_dir / "daphne.log") as server:
            yield EmbeddedPlatform(
                url=server.url, keys=keys, admin=_admin_credentials(var_dir), var_dir=var_dir, server=server, beside=companion
            )
    finally:
        if companion is not None:
            if companion.poll() is None:
                companion.kill()
            companion.wait()
            output.close()
