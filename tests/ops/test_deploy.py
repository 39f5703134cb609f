"""Deployment files, checked as far as this machine allows (no Docker engine, no cluster):
Kubernetes manifests against the bundled Kubernetes schemas (offline), the compose file's and
Dockerfile's structure, the entry point's behaviour, and Django's deploy checks with the
production settings the manifests set."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest version we support; the schemas ship with kubernetes-validate


def _documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path.name, document) for document in yaml.safe_load_all(path.read_text()) if document]
    return found


def _by_kind(kind: str) -> dict[str, dict]:
    return {document["metadata"]["name"]: document for _, document in _documents() if document["kind"] == kind}


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.mark.parametrize(("filename", "document"), _documents(), ids=lambda value: value if isinstance(value, str) else "")
def test_each_manifest_is_valid_against_the_kubernetes_schema(filename, document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)  # raises ValidationError


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def _container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_web_and_stream_deployments_probe_readiness_and_liveness():
    deployments = _by_kind("Deployment")
    web = _container(deployments["mlops-web"], "web")
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "gunicorn" in web["command"]
    stream = _container(deployments["mlops-stream"], "stream")
    assert stream["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert stream["readinessProbe"]["httpGet"]["path"] in ("/readyz", "/healthz")
    assert "daphne" in stream["command"] and "--application-close-timeout=10" in stream["command"]


def test_pods_run_as_non_root_with_a_read_only_root_filesystem():
    for _, document in _documents():
        spec = document.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
        if not pod:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True, document["metadata"]["name"]
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, container["name"]
            assert "limits" in container["resources"] and "requests" in container["resources"], container["name"]


def test_the_web_pod_outlives_gunicorns_graceful_timeout():
    web = _by_kind("Deployment")["mlops-web"]["spec"]["template"]["spec"]
    env = {item["name"]: item.get("value") for item in _container({"spec": {"template": {"spec": web}}}, "web")["env"]}
    graceful = int(env["WEB_GRACEFUL_TIMEOUT"])
    pre_stop = int(_container({"spec": {"template": {"spec": web}}}, "web")["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert web["terminationGracePeriodSeconds"] > graceful + pre_stop


def test_hpa_scales_web_and_stream_from_2_to_12_on_cpu():
    hpas = _by_kind("HorizontalPodAutoscaler")
    for name in ("mlops-web", "mlops-stream"):
        spec = hpas[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 12)
        assert [metric["resource"]["name"] for metric in spec["metrics"]] == ["cpu"]


def test_disruption_budgets_cover_web_and_stream():
    deployments = _by_kind("Deployment")
    for name, budget in _by_kind("PodDisruptionBudget").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert set(_by_kind("PodDisruptionBudget")) == {"mlops-web", "mlops-stream"}


def test_settings_come_from_the_configmap_and_the_secret():
    config = _by_kind("ConfigMap")["mlops-config"]["data"]
    secret = _by_kind("Secret")["mlops-secrets"]["stringData"]
    assert config["DEBUG"] == "0" and "SECRET_KEY" not in config and "DATABASE_URL" not in config
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "AWS_SECRET_ACCESS_KEY"} <= set(secret)
    for name in ("mlops-web", "mlops-stream", "mlops-guard"):
        pod = _by_kind("Deployment")[name]["spec"]["template"]["spec"]
        sources = [next(iter(source.values()))["name"] for source in pod["containers"][0]["envFrom"]]
        assert sources == ["mlops-config", "mlops-secrets"]


def test_a_cronjob_syncs_the_models_one_at_a_time():
    cronjob = _by_kind("CronJob")["mlops-sync-models"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == "sync_models"


def test_the_ingress_routes_stream_to_stream_and_the_rest_to_web():
    [ingress] = _by_kind("Ingress").values()
    paths = {path["path"]: path["backend"]["service"]["name"] for path in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {"/stream/": "mlops-stream", "/": "mlops-web"}


# --- compose, router, Dockerfile -------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_has_every_service_of_the_platform():
    services = _compose()["services"]
    assert {"postgres", "redis", "minio", "web", "stream", "router"} <= set(services)
    assert "gunicorn" in services["web"]["command"]
    assert services["stream"]["command"][0] == "daphne" and "--application-close-timeout" in services["stream"]["command"]
    env = services["web"]["environment"]
    assert env["DEBUG"] == "0" and env["MODEL_STORE_URL"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")


def test_compose_references_only_services_and_volumes_it_defines():
    compose = _compose()
    services, volumes = set(compose["services"]), set(compose["volumes"])
    for name, service in compose["services"].items():
        assert set(service.get("depends_on", {})) <= services, name
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source in volumes or (DEPLOY / source).exists(), (name, mount)
    assert "8080:80" in compose["services"]["router"]["ports"]


def test_compose_stops_web_only_after_gunicorns_graceful_timeout():
    web = _compose()["services"]["web"]
    assert int(web["stop_grace_period"].rstrip("s")) > int(web["environment"]["WEB_GRACEFUL_TIMEOUT"])


def test_the_router_sends_stream_to_stream_unbuffered_and_the_rest_to_web():
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    stream_block = re.search(r"handle /stream/\* \{(.*?)\n\t\}", caddyfile, re.DOTALL).group(1)
    assert "reverse_proxy stream:8001" in stream_block and "flush_interval -1" in stream_block
    assert re.search(r"handle \{\s*reverse_proxy web:8000\s*\}", caddyfile)
    assert "respond /metrics 404" in caddyfile


def test_the_dockerfile_builds_a_non_root_production_image():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert stages and all(stage.startswith("python:3.11-slim") for stage in stages)
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"DEBUG=0", dockerfile) and "collectstatic" in dockerfile
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY source {path} does not exist"
    assert (ROOT / "gunicorn.conf.py").exists()


def test_the_entrypoint_empties_the_metrics_folder_and_runs_the_command(tmp_path):
    entrypoint = DEPLOY / "entrypoint.sh"
    assert entrypoint.stat().st_mode & stat.S_IXUSR
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    (metrics / "counter_123.db").write_bytes(b"stale")
    result = subprocess.run(
        [str(entrypoint), "sh", "-c", 'ls -A "$PROMETHEUS_MULTIPROC_DIR"; echo ran'],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ran"


def test_djangos_deploy_checks_pass_with_the_production_settings_of_the_manifests():
    """``manage.py check --deploy`` with the ConfigMap's settings and secret-like values."""
    config = _by_kind("ConfigMap")["mlops-config"]["data"]
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update(config)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "mlops.settings",
            "SECRET_KEY": "deploy-check-" + "x7Q2pL9sK4vN8mR3tW6yZ1bC5dF0gH" * 2,
            "ALLOWED_HOSTS": f"{config['PUBLIC_HOSTS']},localhost,10.0.0.7",
            "REDIS_URL": "redis://127.0.0.1:6379/14",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    issues = [line for line in (result.stdout + result.stderr).splitlines() if re.match(r"^\S*: \(", line) or line.startswith("?: (")]
    # The API schema's own warnings are the OpenAPI tests' business (tests/mlops/api/test_openapi.py).
    issues = [line for line in issues if "(drf_spectacular." not in line]
    assert not issues, "\n".join(issues)


def test_the_images_collectstatic_step_runs_with_its_build_time_settings(tmp_path):
    """The Dockerfile's RUN step, here: DEBUG off with throw-away key and host, no database, no Redis."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    step = re.search(r"SECRET_KEY=(\S+) ALLOWED_HOSTS=(\S+)", dockerfile)
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DJANGO_SETTINGS_MODULE="mlops.settings",
        DEBUG="0",
        SECRET_KEY=step.group(1),
        ALLOWED_HOSTS=step.group(2),
        STATIC_ROOT=str(tmp_path / "static"),
        VAR_DIR=str(tmp_path / "var"),
    )
    command = [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "drf_spectacular_sidecar" / "swagger-ui-dist" / "swagger-ui-bundle.js").is_file()
    assert (tmp_path / "static" / "admin" / "css" / "base.css").is_file()
