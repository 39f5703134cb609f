"""A real daphne process (`mlops.asgi:application`) on a free loopback port, against the test database."""

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    from tests.conftest import free_port as port

    return port()


def server_env(**extra) -> dict:
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the server process needs the PostgreSQL test database")
    return {
        **os.environ,  # REDIS_URL, MODEL_*, CACHE_KEY_PREFIX and CHANNEL_PREFIX of this test session
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}",
        "DEBUG": "1",
        "RATELIMIT_ENABLE": "0",
        "INFERENCE_GENERATION_POLL_SECONDS": "0.2",
        "ROLLOUT_GUARD_IN_PROCESS": "0",
        "AUDIT_SIGNAL_HANDLERS": "0",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@contextlib.contextmanager
def daphne(**extra):
    """Yields the base URL of a daphne serving the project; waits until it answers /healthz."""
    port = free_port()
    with serving([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mlops.asgi:application"], port, extra) as base:
        yield base


@contextlib.contextmanager
def gunicorn(**extra):
    """Yields the base URL of the `web` process (gunicorn, one worker, mlops.wsgi)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning"]
    with serving([*command, "mlops.wsgi:application"], port, extra) as base:
        yield base


@contextlib.contextmanager
def serving(command: list[str], port: int, extra: dict):
    process = subprocess.Popen(command, cwd=ROOT, env=server_env(**extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited: {process.stderr.read().decode()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not start within 30 s")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
