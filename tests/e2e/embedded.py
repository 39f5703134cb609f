"""The platform as `make run` starts it: the embedded default in a folder of its own.

``manage.py migrate``, ``bootstrap_demo`` (the demo product and admin user) and two API keys,
then one daphne process for everything, with none of the test session's layers in its
environment: SQLite, a local model folder and in-memory cache and channel layer, all under a
temporary VAR_DIR. Tests that speak to the platform the way its README tells users to start it
use this (the `embedded_platform` fixture of tests/e2e/conftest.py).
"""

from collections.abc import Iterator
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


def _admin_credentials(var_dir: Path) -> tuple[str, str]:
    lines = dict(line.split(": ", 1) for line in (var_dir / CREDENTIALS_FILE).read_text().splitlines() if ": " in line)
    return lines["username"], lines["password"]


@contextmanager
def embedded_platform(var_dir: Path, *, env: dict[str, str | None] | None = None) -> Iterator[EmbeddedPlatform]:
    """The platform of `make run` under ``var_dir``, with ``env`` on top (e.g. a setting to tune)."""
    environment = {"VAR_DIR": str(var_dir), **(env or {})}
    servers.manage(["migrate", "--no-input", "-v", "0"], env=environment, embedded=True)
    servers.manage(["bootstrap_demo"], env=environment, embedded=True)
    keys = {
        role: servers.manage(["create_api_key", "--client", f"e2e-{role}", "--role", role], env=environment, embedded=True).strip()
        for role in ("internal_service", "ml_ops")
    }
    with servers.start("daphne", env=environment, embedded=True, log=var_dir / "daphne.log") as server:
        yield EmbeddedPlatform(url=server.url, keys=keys, admin=_admin_credentials(var_dir), var_dir=var_dir, server=server)
