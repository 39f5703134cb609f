"""Settings from the environment: the embedded default needs nothing; production refuses unsafe values;
every setting has one default, in mlops/settings.py."""

import ast
import json
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


def test_a_secret_can_come_from_a_mounted_file(tmp_path):
    """Secret stores (Vault Agent, the CSI driver, Kubernetes secrets) mount files: NAME_FILE names one."""
    (tmp_path / "secret-key").write_text(PRODUCTION_ENV["SECRET_KEY"])
    (tmp_path / "jwt").write_text("a-jwt-secret-from-vault\n")  # as a template or `echo` writes it
    env = {**PRODUCTION_ENV, "SECRET_KEY_FILE": str(tmp_path / "secret-key"), "JWT_SECRET_FILE": str(tmp_path / "jwt")}
    del env["SECRET_KEY"]
    code = f"from django.conf import settings; print(settings.JWT_SECRET, settings.SECRET_KEY == {PRODUCTION_ENV['SECRET_KEY']!r})"
    result = manage("shell", "-c", code, tmp_path=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "a-jwt-secret-from-vault True"


def test_tls_options_of_the_data_store_urls_reach_their_clients(tmp_path):
    """docs/production.md's URLs for TLS to PostgreSQL and Redis: their options reach psycopg and redis-py."""
    env = {
        "DATABASE_URL": "postgres://mlops@db:5432/mlops?sslmode=verify-full&sslrootcert=/tls/ca.pem&sslcert=/tls/c.pem&sslkey=/tls/c.key",
        "REDIS_URL": "rediss://:pw@redis:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/tls/ca.pem",
    }
    code = (
        "import json, redis; from django.conf import settings; o = settings.DATABASES['default']['OPTIONS'];"
        " pool = redis.Redis.from_url(settings.CACHES['default']['LOCATION']).connection_pool;"
        " print(json.dumps([o['sslmode'], o['sslrootcert'], o['sslcert'], o['sslkey'], 'pool' in o,"
        " pool.connection_class.__name__, pool.connection_kwargs['ssl_ca_certs'], settings.CHANNEL_LAYERS['default']['CONFIG']['hosts']]))"
    )
    result = manage("shell", "-c", code, tmp_path=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        "verify-full", "/tls/ca.pem", "/tls/c.pem", "/tls/c.key", True, "SSLConnection", "/tls/ca.pem", [env["REDIS_URL"]],
    ]  # fmt: skip


# Run in the embedded default: another process (here a second connection) is in the middle of a
# write when a person promotes a canary. It commits the moment the promotion asks for the write
# lock, as a log writer's batch would a moment later; a promotion that read first and could not
# wait for the lock would fail at once with "database is locked" (the API's 500).
PROMOTE_WHILE_ANOTHER_WRITES = """
import sqlite3
from django.core.management import call_command
from django.db import connection
from mlops.services.rollout import canary_promote, canary_set
from tests.audit.conftest import make_version

call_command("migrate", verbosity=0)
make_version("logreg", "1", status="production")
canary = make_version("gbdt", "1", status="validated")
canary_set(product="fraud_score", canary_model_id=canary.pk, canary_percent=10, user=None, reason="try it")
other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
other.execute("BEGIN IMMEDIATE")
other.execute("UPDATE mlops_modelversion SET description = 'touched' WHERE name = 'logreg'")

def commit_the_other_on_a_request_for_the_lock(sql):
    if sql.startswith("BEGIN IMMEDIATE") and other.in_transaction:
        other.execute("COMMIT")

connection.ensure_connection()
connection.connection.set_trace_callback(commit_the_other_on_a_request_for_the_lock)
print(canary_promote(product="fraud_score", user=None, reason="healthy").production_model.name)
"""


def test_a_change_waits_for_another_processs_write_to_the_embedded_database(tmp_path):
    result = manage("shell", "-c", PROMOTE_WHILE_ANOTHER_WRITES, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "gbdt"


def test_postgres_uses_psycopg3_with_djangos_pool(postgresql):
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 0
    assert settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] >= 1
    import psycopg

    assert psycopg.__version__.startswith("3.")


def test_postgres_connections_leave_the_logs_short_reads_uncompiled(postgresql, db):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


def test_a_database_url_with_its_own_server_options_keeps_them(tmp_path):
    code = "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS']['options'])"
    result = manage("shell", "-c", code, tmp_path=tmp_path, DATABASE_URL="postgres://mlops@db:5432/mlops?options=-c%20work_mem%3D64MB")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "-c work_mem=64MB"


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
