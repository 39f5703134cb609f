"""The operator's commands: sync_models, push_model and bootstrap_demo."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from mlops import selectors, services
from mlops.artifacts.stores import sha256_of, store_from_url
from mlops.choices import ModelStatus
from mlops.models import ModelVersion
from mlops.security.authentication import api_keys, verify_api_key
from tests.conftest import free_port

pytestmark = pytest.mark.django_db
ROOT = Path(django_settings.BASE_DIR)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py as an operator would, on a throw-away embedded-default installation."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "VAR_DIR": str(tmp_path / "var"),
        **env,
    }
    environment.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


@pytest.fixture
def s3_store_with_models(s3_bucket, demo_model_files):
    store = store_from_url(f"s3://{s3_bucket}/models")
    for name in ("logreg", "gbdt"):
        path = Path(demo_model_files[name].path)
        store.put(path, "fraud_score", name, "1", {"sha256": sha256_of(path), "threshold": 0.55})
    return store


def test_sync_models_registers_new_artifacts_from_s3_as_candidates(s3_store_with_models):
    output = run("sync_models", "--store", s3_store_with_models.url)
    assert "registered fraud_score/gbdt@1: registered as candidate" in " ".join(output.split())
    assert set(ModelVersion.objects.values_list("name", "status", "threshold")) == {
        ("logreg", ModelStatus.CANDIDATE, 0.55),
        ("gbdt", ModelStatus.CANDIDATE, 0.55),
    }
    assert ModelVersion.objects.get(name="logreg").artifact_uri.startswith(f"{s3_store_with_models.url}/fraud_score/logreg/1/")


def test_sync_models_twice_registers_nothing_new(s3_store_with_models):
    run("sync_models", "--store", s3_store_with_models.url)
    output = run("sync_models", "--store", s3_store_with_models.url)
    assert output.count("present") == 2
    assert ModelVersion.objects.count() == 2


def test_sync_models_refuses_a_tampered_artifact_and_registers_the_rest(s3_store_with_models, tmp_path, demo_model_files):
    logreg = Path(demo_model_files["logreg"].path).read_bytes()
    published = tmp_path / "published.onnx"
    published.write_bytes(logreg.replace(b"mean_radius", b"mean_radiuz"))  # a new version, never synced
    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(logreg.replace(b"mean_radius", b"mean_radiux"))  # its bytes changed in the store
    s3_store_with_models.put(tampered, "fraud_score", "logreg", "2", {"sha256": sha256_of(published)})
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 artifact"):
        call_command("sync_models", "--store", s3_store_with_models.url, stdout=out, stderr=io.StringIO())
    assert "refused    fraud_score/logreg@2" in out.getvalue()
    assert "sha256" in out.getvalue()
    assert not ModelVersion.objects.filter(name="logreg", version="2").exists()
    assert ModelVersion.objects.count() == 2


def test_sync_models_against_an_unreachable_store_exits_non_zero_with_one_readable_line(tmp_path):
    result = manage(
        "sync_models", "--store", "s3://models/prefix", tmp_path=tmp_path,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "model store s3://models/prefix is unreachable" in line


def test_sync_models_rejects_a_bad_store_url(tmp_path):
    result = manage("sync_models", "--store", "ftp://example/models", tmp_path=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip() == "CommandError: unsupported store URL 'ftp://example/models': use file:///path or s3://bucket/prefix"


def test_push_model_uploads_and_registers(demo_model_files, tmp_path):
    store = store_from_url((tmp_path / "store").as_uri())
    output = run(
        "push_model", str(demo_model_files["gbdt"].path), "--product", "fraud_score", "--name", "gbdt", "--version", "9",
        "--threshold", "0.7", "--store", store.url,
    )  # fmt: skip
    assert "registered fraud_score/gbdt@9 as candidate" in output
    assert [a.version for a in store.discover()] == ["9"]
    assert ModelVersion.objects.get(version="9").threshold == 0.7


def test_push_model_refuses_a_file_that_is_not_onnx(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"definitely not protobuf")
    result = manage("push_model", str(junk), "--product", "fraud_score", "--name", "x", "--version", "1", tmp_path=tmp_path)
    assert result.returncode != 0
    assert "not a readable ONNX model" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_command_on_an_unmigrated_database_says_so_in_one_line(tmp_path, demo_model_files):
    path = str(demo_model_files["logreg"].path)
    result = manage("push_model", path, "--product", "fraud_score", "--name", "x", "--version", "1", tmp_path=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "database error: no such table" in line and "manage.py migrate" in line


def test_bootstrap_demo_twice_is_idempotent(tmp_path, settings):
    settings.MODEL_STORE_URL = (tmp_path / "store").as_uri()
    settings.VAR_DIR = tmp_path
    first = run("bootstrap_demo")
    assert "promoted fraud_score/logreg@1 to production" in first
    credentials = (tmp_path / "demo-credentials.txt").read_text()
    assert credentials.startswith("username: admin")
    assert "api key (demo, inference_client): mlk_" in credentials
    second = run("bootstrap_demo")
    assert "registered" not in second and "promoted" not in second
    assert "exists (password unchanged)" in second
    assert "API key of client 'demo' exists" in second
    assert "shadow of 'fraud_score' set before (unchanged)" in second
    assert sorted(ModelVersion.objects.values_list("name", "status")) == [("gbdt", "validated"), ("logreg", "production")]
    assert get_user_model().objects.filter(username="admin", is_superuser=True).count() == 1


def test_bootstrap_demo_shadows_production_with_the_validated_gbdt(tmp_path, settings):
    settings.MODEL_STORE_URL = (tmp_path / "store").as_uri()
    settings.VAR_DIR = tmp_path
    output = run("bootstrap_demo")
    assert "validated fraud_score/gbdt@1" in output
    shadow = selectors.shadow_effective(product="fraud_score")
    assert shadow.enabled and (shadow.shadow_model.name, shadow.sample_percent) == ("gbdt", 100)


def test_bootstrap_demo_keeps_a_shadow_someone_disabled(tmp_path, settings):
    settings.MODEL_STORE_URL = (tmp_path / "store").as_uri()
    settings.VAR_DIR = tmp_path
    run("bootstrap_demo")
    services.shadow_disable(product="fraud_score", user=None, reason="too noisy")
    run("bootstrap_demo")
    assert not selectors.shadow_effective(product="fraud_score").enabled


def test_bootstrap_of_a_fresh_database_replaces_stale_credentials(tmp_path, settings):
    settings.MODEL_STORE_URL = (tmp_path / "store").as_uri()
    settings.VAR_DIR = tmp_path
    stale = "username: admin\npassword: from-an-old-database\napi key (demo, inference_client): mlk_0123456789.stale\n"
    (tmp_path / "demo-credentials.txt").write_text(stale)  # left behind by a deleted var/db.sqlite3
    run("bootstrap_demo")
    lines = (tmp_path / "demo-credentials.txt").read_text().splitlines()
    [key_line] = [line for line in lines if line.startswith("api key")]
    [password_line] = [line for line in lines if line.startswith("password: ")]
    assert "stale" not in key_line and "from-an-old-database" not in password_line
    user = get_user_model().objects.get(username="admin")
    assert user.check_password(password_line.removeprefix("password: "))
    api_keys.invalidate()
    assert verify_api_key(key_line.partition(": ")[2]).name == "demo"
    assert oct((tmp_path / "demo-credentials.txt").stat().st_mode & 0o777) == "0o600"
