"""Settings from the environment: the embedded default needs nothing; production refuses unsafe values;
every setting has one default, in mlops/settings.py."""

import ast
import os
import subprocess
import sys
from pathlib import Path

from django.conf import global_settings, settings

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


APPS = ("mlops", "inference", "audit")


def _app_modules():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if path != ROOT / "mlops" / "settings.py":
                yield path, ast.parse(path.read_text(), filename=str(path))


def _is_settings(node) -> bool:
    return isinstance(node, ast.Name) and node.id == "settings"


def test_every_setting_the_apps_read_has_its_one_default_in_settings():
    """A name read as ``settings.NAME`` must be defined in mlops/settings.py (or be one of Django's own)."""
    import mlops.settings as project_settings

    defined = set(vars(project_settings)) | set(vars(global_settings))
    undefined = set()
    for path, tree in _app_modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_settings(node.value) and node.attr.isupper() and node.attr not in defined:
                undefined.add(f"{path.relative_to(ROOT)}:{node.lineno} settings.{node.attr}")
    assert not undefined, sorted(undefined)


def test_no_app_reads_a_setting_with_a_fallback_default():
    """``getattr(settings, NAME, default)`` would be a second default beside the one in mlops/settings.py."""
    fallbacks = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, tree in _app_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) == 3
        and _is_settings(node.args[0])
    ]
    assert not fallbacks, fallbacks
