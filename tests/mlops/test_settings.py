"""Settings from the environment: the embedded default needs nothing; production refuses unsafe values."""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "a-real-secret-key-of-enough-length-and-entropy-0123456789-abcdefghijkl",
    "ALLOWED_HOSTS": "mlops.example.com",
}


def manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    environment.update(DJANGO_SETTINGS_MODULE="mlops.settings", VAR_DIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def test_the_embedded_default_needs_no_configuration(tmp_path):
    result = manage("check", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_settings_pass_the_deployment_checklist(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_debug_off_without_a_secret_key_refuses_to_start(tmp_path):
    env = {**PRODUCTION_ENV}
    del env["SECRET_KEY"]
    result = manage("check", tmp_path=tmp_path, **env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_off_without_allowed_hosts_refuses_to_start(tmp_path):
    env = {**PRODUCTION_ENV}
    del env["ALLOWED_HOSTS"]
    result = manage("check", tmp_path=tmp_path, **env)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set" in result.stderr


def test_postgres_uses_psycopg3_with_djangos_pool(postgresql):
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 0
    assert settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] >= 1
    import psycopg

    assert psycopg.__version__.startswith("3.")
