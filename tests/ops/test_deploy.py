"""Deployment files, checked as far as this machine allows (no Docker engine, no cluster): the
Procfile, and compose, Kubernetes and the image running its commands; Kubernetes manifests against
the bundled Kubernetes schemas (offline), the compose file's and Dockerfile's structure, where the
routers send each path, the entry point's behaviour, and Django's deploy checks with the production
settings the manifests set. The e2e test here starts each server from its Procfile line."""

import contextlib
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests import servers

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest version we support; the schemas ship with kubernetes-validate
ENTRYPOINT = "/app/deploy/entrypoint.sh"
PROCFILE = servers.procfile()
SERVERS = ("web", "stream", "infer")  # the process types that listen on $PORT
VENV_BIN = Path(sys.executable).parent  # not resolved: the virtualenv's bin, where its programs are


def _container_command(procfile_line: str) -> list[str]:
    """How compose, Kubernetes and the image run a Procfile line (after the entry point): the shell
    expands $PORT, and `exec` leaves the server, not the shell, to receive SIGTERM."""
    return ["sh", "-c", f"exec {procfile_line}"]


# --- Procfile -------------------------------------------------------------------------------


def test_the_procfile_names_every_production_process_type():
    assert set(PROCFILE) == {"web", "stream", "infer", "guard"}


@pytest.mark.parametrize("name", sorted(PROCFILE))
def test_each_procfile_command_runs_a_program_on_path(name):
    command = PROCFILE[name]
    program = shlex.split(command)[0]
    assert "/" not in program and ".venv" not in command, command  # honcho, foreman, Heroku: PATH decides
    assert os.access(VENV_BIN / program, os.X_OK), f"{program} is not installed in {VENV_BIN}"


@pytest.mark.parametrize("name", sorted(PROCFILE))
def test_the_servers_listen_on_port_and_the_guard_listens_on_nothing(name):
    assert ("$PORT" in PROCFILE[name]) == (name in SERVERS), PROCFILE[name]


@pytest.mark.parametrize("document", ["README.md", "docs/production.md"])
def test_the_readme_and_the_production_guide_show_the_procfiles_commands(document):
    text = (ROOT / document).read_text()
    assert [name for name, command in PROCFILE.items() if f"`{command}`" not in text] == []


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


def _env(container: dict) -> dict[str, str | None]:
    return {item["name"]: item.get("value") for item in container["env"]}


@pytest.mark.parametrize("name", sorted(PROCFILE))
def test_kubernetes_runs_each_process_type_with_its_procfile_command(name):
    container = _container(_by_kind("Deployment")[f"mlops-{name}"], name)
    # `command` replaces the image's ENTRYPOINT, so the entry point is named first.
    assert container["command"] == [ENTRYPOINT, *_container_command(PROCFILE[name])]


@pytest.mark.parametrize("name", SERVERS)
def test_each_kubernetes_server_listens_on_the_port_its_probes_use(name):
    container = _container(_by_kind("Deployment")[f"mlops-{name}"], name)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == int(_env(container)["PORT"])
    assert {container[probe]["httpGet"]["port"] for probe in ("readinessProbe", "livenessProbe")} == {"http"}


def test_web_infer_and_stream_deployments_probe_readiness_and_liveness():
    deployments = _by_kind("Deployment")
    for name in ("web", "infer"):  # both load the models: ready once every production model is warmed
        container = _container(deployments[f"mlops-{name}"], name)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
    stream = _container(deployments["mlops-stream"], "stream")
    assert stream["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert stream["readinessProbe"]["httpGet"]["path"] in ("/readyz", "/healthz")


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


def _granian_kill_timeout() -> int:
    """How long granian lets a worker drain after SIGTERM before it kills it (the Procfile's flag)."""
    return int(re.search(r"--workers-kill-timeout (\d+)", PROCFILE["infer"]).group(1))


@pytest.mark.parametrize("name", ["web", "infer"])
def test_the_pods_answering_predictions_outlive_their_servers_drain(name):
    """SIGKILL must never come before the server has drained and flushed the prediction log."""
    deployment = _by_kind("Deployment")[f"mlops-{name}"]
    container = _container(deployment, name)
    drain = int(_env(container)["WEB_GRACEFUL_TIMEOUT"]) if name == "web" else _granian_kill_timeout()
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain + pre_stop


def test_hpa_scales_every_server_from_2_to_12_on_cpu():
    hpas = _by_kind("HorizontalPodAutoscaler")
    assert set(hpas) == {f"mlops-{name}" for name in SERVERS}
    for name in hpas:
        spec = hpas[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 12)
        assert [metric["resource"]["name"] for metric in spec["metrics"]] == ["cpu"]


def test_disruption_budgets_cover_every_server():
    deployments = _by_kind("Deployment")
    for name, budget in _by_kind("PodDisruptionBudget").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert set(_by_kind("PodDisruptionBudget")) == {f"mlops-{name}" for name in SERVERS}


def test_settings_come_from_the_configmap_and_the_secret():
    config = _by_kind("ConfigMap")["mlops-config"]["data"]
    secret = _by_kind("Secret")["mlops-secrets"]["stringData"]
    assert config["DEBUG"] == "0" and "SECRET_KEY" not in config and "DATABASE_URL" not in config
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "AWS_SECRET_ACCESS_KEY"} <= set(secret)
    for name in (f"mlops-{name}" for name in PROCFILE):
        pod = _by_kind("Deployment")[name]["spec"]["template"]["spec"]
        sources = [next(iter(source.values()))["name"] for source in pod["containers"][0]["envFrom"]]
        assert sources == ["mlops-config", "mlops-secrets"]


def test_a_cronjob_syncs_the_models_one_at_a_time():
    cronjob = _by_kind("CronJob")["mlops-sync-models"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == "sync_models"


# --- where the routers send each path ------------------------------------------------------

# Paths that are not the hot lane's, and the process type that answers each.
NOT_THE_LANE = {
    "/stream/v1/infer": "stream",
    "/stream/live/fraud_score/": "stream",
    "/v1/models": "web",
    "/v1/outcomes": "web",
    "/v1/canary/fraud_score": "web",
    "/admin/": "web",
    "/api/docs/": "web",
    "/healthz": "web",
    "/": "web",
}


def _hot_lane_paths() -> list[str]:
    """A path of every endpoint the hot lane serves to clients (not its own probes)."""
    from inference.lane import endpoints

    served = [path for path, endpoint in endpoints.ROUTES.items() if endpoint.capability is not None]
    return [*served, endpoints.PREDICTION_PREFIX + "01928f4e-7c1a-7b3e-9a51-3c2d8e6f0a17"]


def _expected_routes() -> dict[str, str]:
    return {**dict.fromkeys(_hot_lane_paths(), "infer"), **NOT_THE_LANE}


def _ingress_service(path: str) -> str:
    """The Service the Ingress sends ``path`` to, by the Ingress rules: an Exact path matches itself,
    a Prefix path whole leading segments; the longest match wins, Exact before Prefix."""
    [ingress] = _by_kind("Ingress").values()
    segments = [part for part in path.split("/") if part]
    matches = []
    for rule in ingress["spec"]["rules"][0]["http"]["paths"]:
        prefix = [part for part in rule["path"].split("/") if part]
        exact = rule["pathType"] == "Exact"
        if (rule["path"] == path) if exact else (segments[: len(prefix)] == prefix):
            matches.append((len(rule["path"].rstrip("/")), exact, rule["backend"]["service"]["name"]))
    return max(matches)[2]


@pytest.mark.parametrize("path", sorted(_expected_routes()))
def test_the_ingress_sends_each_path_to_the_process_type_that_serves_it(path):
    assert _ingress_service(path) == f"mlops-{_expected_routes()[path]}"


# --- compose, router, Dockerfile -------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _as_compose_runs(value: str) -> str:
    """``value`` as compose passes it on: compose itself substitutes $VAR and ${VAR...} with the host's
    variables (shown here as <host VAR>, so that a comparison names them) and turns $$ into $."""
    return re.sub(r"\$(\$|\{[^}]*\}|\w+)", lambda match: "$" if match[1] == "$" else f"<host {match[1]}>", value)


def test_compose_has_every_service_of_the_platform():
    services = _compose()["services"]
    assert {"postgres", "redis", "minio", "router", *PROCFILE} <= set(services)
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


@pytest.mark.parametrize("name", sorted(PROCFILE))
def test_compose_runs_each_process_type_with_its_procfile_command(name):
    service = _compose()["services"][name]
    assert "entrypoint" not in service  # the image's entry point runs first, then the command
    assert [_as_compose_runs(arg) for arg in service["command"]] == _container_command(PROCFILE[name])


@pytest.mark.parametrize("name", SERVERS)
def test_compose_checks_each_server_on_the_port_it_listens_on(name):
    service = _compose()["services"][name]
    port = service["environment"]["PORT"]
    assert service["expose"] == [port]
    assert f"//localhost:{port}/" in service["healthcheck"]["test"][-1]


def test_compose_checks_that_the_hot_lane_is_ready_not_only_up():
    assert "/readyz" in _compose()["services"]["infer"]["healthcheck"]["test"][-1]


def test_compose_stops_web_and_infer_only_after_their_servers_drain():
    services = _compose()["services"]
    for name, drain in (("web", int(services["web"]["environment"]["WEB_GRACEFUL_TIMEOUT"])), ("infer", _granian_kill_timeout())):
        assert int(services[name]["stop_grace_period"].rstrip("s")) > drain, name


def _caddy_routes() -> tuple[list[tuple[list[str], str, str]], str]:
    """deploy/Caddyfile's handle blocks as ([path patterns], upstream, block) and the catch-all's upstream;
    a block's upstream is its reverse_proxy's host (or "files" for a file server)."""
    lines = (DEPLOY / "Caddyfile").read_text().splitlines()
    matchers = dict(re.findall(r"^\s*(@\S+) path (.+)$", "\n".join(lines), re.MULTILINE))
    routes, catch_all, depth, current = [], None, 0, None
    for line in lines:
        text = line.strip()
        if depth == 1 and (start := re.match(r"^handle(?:_path)?(?: (\S+))? \{$", text)):
            matcher = start.group(1)
            current = {"patterns": (matchers.get(matcher) or matcher or "").split(), "body": []}
        elif current is not None:
            current["body"].append(text)
        depth += text.count("{") - text.count("}")
        if current is not None and depth == 1:
            body = "\n".join(current["body"])
            upstream = proxy.group(1).split(":")[0] if (proxy := re.search(r"reverse_proxy (\S+)", body)) else "files"
            if current["patterns"]:
                routes.append((current["patterns"], upstream, body))
            else:
                catch_all = upstream
            current = None
    return routes, catch_all


def _caddy_matches(pattern: str, path: str) -> bool:
    """Caddy's path matcher: a trailing * matches any rest, otherwise the whole path (case-insensitive)."""
    pattern, path = pattern.lower(), path.lower()
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


def _router_upstream(path: str) -> str:
    routes, catch_all = _caddy_routes()
    matching = [upstream for patterns, upstream, _ in routes if any(_caddy_matches(p, path) for p in patterns)]
    # Caddy orders overlapping handle blocks by its own rules; disjoint blocks make the order moot.
    assert len(matching) <= 1, f"{path} matches several handle blocks: {matching}"
    return matching[0] if matching else catch_all


@pytest.mark.parametrize("path", sorted({*_expected_routes(), "/static/admin/css/base.css"}))
def test_the_router_sends_each_path_to_the_process_type_that_serves_it(path):
    expected = "files" if path.startswith("/static/") else _expected_routes()[path]
    assert _router_upstream(path) == expected


@pytest.mark.parametrize("name", SERVERS)
def test_the_router_reaches_each_server_on_the_port_it_listens_on(name):
    port = _compose()["services"][name]["environment"]["PORT"]
    assert f"reverse_proxy {name}:{port}" in (DEPLOY / "Caddyfile").read_text()


def test_the_router_passes_server_sent_events_on_unbuffered_and_hides_metrics():
    routes, _ = _caddy_routes()
    [stream_block] = [body for _, upstream, body in routes if upstream == "stream"]
    assert "flush_interval -1" in stream_block
    assert "respond /metrics 404" in (DEPLOY / "Caddyfile").read_text()


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


def test_the_image_runs_web_through_the_entry_point_by_default_and_exposes_every_servers_port():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.MULTILINE).group(1)) == [ENTRYPOINT]
    assert json.loads(re.search(r"^CMD (.+)$", dockerfile, re.MULTILINE).group(1)) == _container_command(PROCFILE["web"])
    exposed = re.search(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE).group(1).split()
    assert set(exposed) == {_compose()["services"][name]["environment"]["PORT"] for name in SERVERS}
    assert re.search(r"\sPORT=(\S+)", dockerfile).group(1) == _compose()["services"]["web"]["environment"]["PORT"]


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


# --- the Procfile's servers, really started -------------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", SERVERS)
def test_each_server_starts_from_its_procfile_line_and_stops_on_sigterm(name, tmp_path):
    """As a container runs it: the Procfile line through `sh -c "exec ..."`, $PORT and PATH from the
    environment; SIGTERM to that process (what `docker stop` and the kubelet send) ends the server cleanly."""
    port = servers.free_port()
    env = servers.server_environment(
        {**servers.PRODUCTION, "PORT": str(port), "WEB_CONCURRENCY": "1", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    )
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - Server.stop closes it
    command = _container_command(PROCFILE[name])
    # A session of its own, so that whatever the command leaves behind can be ended with it.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = servers.Server(process, port, log)
    try:
        server.wait_until_ready("/healthz")
    finally:
        exit_code = server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert exit_code == 0, f"{name} exited with {exit_code} on SIGTERM:\n{server.output()}"
