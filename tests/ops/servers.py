"""Real server processes for the operations tests."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def start_web(tmp_path: Path, port: int, redis_url: str, **extra_env: str) -> subprocess.Popen:
    """A real gunicorn `web` process (repository gunicorn.conf.py, DEBUG off) on this test's database."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the server process needs the PostgreSQL test database")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REDIS_URL": redis_url,
        "DEBUG": "0",
        "SECRET_KEY": "redis-fault-test-secret-key-not-for-production-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "RATELIMIT_ENABLE": "1",  # counted in Redis until it dies
        "RATELIMIT_PREDICT": "1000000/m",
        "RATELIMIT_PREDICT_BURST": "100000/s",
        "INFERENCE_CACHE_SHARED": "1",  # the shared prediction-cache tier lives in Redis too
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "1",
        "WEB_THREADS": "4",
        "AUDIT_SPILL_DIR": str(tmp_path / "spill"),
        "LOG_LEVEL": "ERROR",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra_env)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "mlops.wsgi:application"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("server exited:\n" + (tmp_path / "server.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail("server not ready within 60 s:\n" + (tmp_path / "server.log").read_text()[-3000:])
