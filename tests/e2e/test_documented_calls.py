"""The calls the documents show, run as written (through curl) against the platform `make run` starts.

Seed 001's API and canary-workflow sections, quoted below, and the README's shell examples, read
from README.md itself so that it stays true. What is replaced in the seed's text, and why:

- its hosts: ``http://localhost:8080`` is this server, and ``http://localhost:3000/api/sira/models``
  (another service of the seed's platform) is this server's ``/v1/models``;
- its placeholders: ``new-model-id`` and ``current-model-id`` are the demo candidate and production
  versions, ``$ML_OPS_TOKEN`` a key of role ``ml_ops``, the body's ``...`` the rest of the body
  shown in the step before;
- the model's inputs: the seed's ``hour_of_day`` and ``is_weekend`` are features of its own model;
  the demo model's 30 take their place in ``payload.features``;
- its metric names: ``sira_canary_traffic_ratio`` is ``mlops_inference_canary_ratio`` here.

In the README's examples, a feature object with ``...`` in it stands for the demo model's 30 features.
Every call runs with curl's ``--fail-with-body``: an answer outside 2xx fails the block that made it.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from sklearn.datasets import load_breast_cancer

from mlops.demo import build_demo_models, demo_feature_names
from tests import servers
from tests.e2e.embedded import embedded_platform

# Seed 001, "API Endpoints": the request bodies as written there.
SEED_INFER = """{
  "event_id": "123e4567-e89b-12d3-a456-426614174000",
  "product": "fraud_score",
  "payload": {
    "amount": 150.50,
    "currency": "USD",
    "country": "US",
    "payment_method": "card",
    "features": {
      "hour_of_day": 14,
      "is_weekend": 0
    }
  }
}"""
# Seed 001, "Canary Deployment Workflow", steps 2 to 6, as written there.
SEED_WORKFLOW = {
    "validate": """curl -X POST http://localhost:3000/api/sira/models/new-model-id/promote \\
  -H "Authorization: Bearer $ML_OPS_TOKEN" \\
  -d '{"target": "validated"}'""",
    "start canary": """curl -X POST http://localhost:8080/v1/canary \\
  -H "Authorization: Bearer $ML_OPS_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "product": "fraud_score",
    "canary_model_id": "new-model-id",
    "production_model_id": "current-model-id",
    "canary_percent": 10
  }'""",
    "metrics": "curl -s http://localhost:8080/metrics | grep sira_canary",
    "step up": """curl -X POST http://localhost:8080/v1/canary \\
  -H "Authorization: Bearer $ML_OPS_TOKEN" \\
  -d '{"product": "fraud_score", "canary_percent": 25, ...}'""",
    "promote": """curl -X POST http://localhost:3000/api/sira/models/new-model-id/promote \\
  -H "Authorization: Bearer $ML_OPS_TOKEN" \\
  -d '{"target": "production"}'""",
    "stop canary": """curl -X POST http://localhost:8080/v1/canary/fraud_score/stop \\
  -H "Authorization: Bearer $ML_OPS_TOKEN\"""",
}

# Every curl fails on an answer outside 2xx, and a block stops at its first failure.
PREAMBLE = 'set -euo pipefail\ncurl() { command curl --silent --show-error --fail-with-body "$@"; }\n'
WITHIN = 5  # seconds for every worker to serve a registry change (the platform promises 2)


class Platform:
    """The platform of `make run` in a folder laid out as the README's examples expect (``var/``
    beside the directory they run in), and a shell that runs documented text against it."""

    def __init__(self, started, workdir: Path):
        self.started = started
        self.url = started.url
        self.workdir = workdir
        self.env = servers.server_environment({"VAR_DIR": str(started.var_dir), "ML_OPS_TOKEN": started.keys["ml_ops"]}, embedded=True)

    def sh(self, text: str, **placeholders: str) -> str:
        """Run ``text`` (documented shell) here; its output. ``placeholders``: words to replace."""
        for word, value in placeholders.items():
            text = text.replace(word, value)
        text = text.replace("http://localhost:3000/api/sira/models", f"{self.url}/v1/models")
        text = text.replace("http://localhost:8080", self.url).replace("http://127.0.0.1:8000", self.url)
        text = text.replace(".venv/bin/python manage.py", f"{sys.executable} {servers.ROOT / 'manage.py'}")
        done = subprocess.run(["bash", "-c", PREAMBLE + text], cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{text}\n--- exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def json(self, text: str, **placeholders: str) -> dict:
        return orjson.loads(self.sh(text, **placeholders))

    def demo_version_ids(self) -> dict[str, str]:
        """{name@version: id} of the demo product's versions, from the registry (the ids the seed leaves open)."""
        script = (
            "import json; from mlops.models import ModelVersion; "
            "print(json.dumps({f'{v.name}@{v.version}': str(v.pk) for v in ModelVersion.objects.all()}))"
        )
        printed = servers.manage(["shell", "-c", script], env={"VAR_DIR": str(self.started.var_dir)}, embedded=True)
        return orjson.loads(printed.splitlines()[-1])  # after Django's "N objects imported automatically"


@pytest.fixture
def platform(tmp_path):
    with embedded_platform(tmp_path / "var") as started:
        yield Platform(started, tmp_path)


def demo_features() -> dict[str, float]:
    return {name: float(value) for name, value in zip(demo_feature_names(), load_breast_cancer().data[0], strict=True)}


def curl_json(method: str, path: str, key_variable: str, body: str | None = None) -> str:
    """A call of seed 001's API section, which shows its requests as method, path and body only."""
    data = f" -H 'Content-Type: application/json' -d '{body}'" if body is not None else ""
    return f'curl -X {method} http://localhost:8080{path} -H "Authorization: Bearer ${key_variable}"{data}'


def test_seed_001s_api_calls_and_canary_workflow_work_as_written(platform, tmp_path):
    # bootstrap_demo validated gbdt@1 (it shadows production): the workflow's candidate is a new version of it.
    gbdt = next(model for model in build_demo_models(tmp_path / "models") if model.name == "gbdt")
    push = ["push_model", str(gbdt.path), "--product", "fraud_score", "--name", "gbdt", "--version", "2", "--threshold", "0.6"]
    servers.manage(push, env={"VAR_DIR": str(platform.started.var_dir)}, embedded=True)
    ids = platform.demo_version_ids()
    placeholders = {"new-model-id": ids["gbdt@2"], "current-model-id": ids["logreg@1"]}
    client_key = dict(line.split(": ", 1) for line in (platform.started.var_dir / "demo-credentials.txt").read_text().splitlines())[
        "api key (demo, inference_client)"
    ]
    platform.env["CLIENT_TOKEN"] = client_key

    # API Endpoints
    body = SEED_INFER.replace('"hour_of_day": 14,\n      "is_weekend": 0', orjson.dumps(demo_features()).decode()[1:-1])
    answer = platform.json(curl_json("POST", "/v1/infer", "CLIENT_TOKEN", body))
    assert {"prediction_id", "model_id", "model_role", "score", "decision", "latency_ms", "cached"} <= set(answer)
    assert answer["explain_summary"] and {"feature", "importance"} <= set(answer["explain_summary"][0])
    recorded = platform.json(curl_json("GET", f"/v1/infer/{answer['prediction_id']}", "CLIENT_TOKEN"))
    assert recorded["event_id"] == "123e4567-e89b-12d3-a456-426614174000" and recorded["product"] == "fraud_score"
    assert {"prediction_id", "model_id", "score", "decision", "latency_ms", "model_role", "created_at"} <= set(recorded)
    models = platform.json(curl_json("GET", "/v1/models", "ML_OPS_TOKEN"))
    assert models["total"] == len(models["models"]) >= 1
    assert {"model_id", "name", "version", "product", "loaded_at"} <= set(models["models"][0])
    for probe in ("/healthz", "/readyz"):
        platform.sh(f"curl http://localhost:8080{probe}")

    # Canary Deployment Workflow
    assert platform.json(SEED_WORKFLOW["validate"], **placeholders)["status"] == "validated"
    started = platform.json(SEED_WORKFLOW["start canary"], **placeholders)
    assert (started["canary_model_id"], started["production_model_id"], started["canary_percent"]) == (ids["gbdt@2"], ids["logreg@1"], 10)
    shown = platform.json(curl_json("GET", "/v1/canary/fraud_score", "ML_OPS_TOKEN"))
    assert {"product", "production_model_id", "canary_model_id", "canary_percent", "started_at", "updated_at"} <= set(shown)
    metrics = SEED_WORKFLOW["metrics"].replace("sira_canary", "'mlops_inference_canary_ratio{product=\"fraud_score\"} 0.1'")
    deadline = time.monotonic() + WITHIN
    while subprocess.run(["bash", "-c", metrics.replace("http://localhost:8080", platform.url)], capture_output=True).returncode:
        assert time.monotonic() < deadline, "no worker reports the canary's share within 5 s"
        time.sleep(0.1)
    rest = '"canary_model_id": "new-model-id", "production_model_id": "current-model-id"'
    stepped = platform.json(SEED_WORKFLOW["step up"].replace("...", rest), **placeholders)
    assert (stepped["canary_percent"], stepped["started_at"]) == (25, started["started_at"])
    assert platform.json(SEED_WORKFLOW["promote"], **placeholders)["status"] == "production"
    stopped = platform.json(SEED_WORKFLOW["stop canary"], **placeholders)
    assert stopped["canary_percent"] == 0 and stopped["production_model_id"] == ids["gbdt@2"]


def test_the_readmes_shell_examples_work_as_written(platform, tmp_path):
    gbdt = next(model for model in build_demo_models(tmp_path / "models") if model.name == "gbdt")
    (platform.workdir / "model.onnx").write_bytes(Path(gbdt.path).read_bytes())  # the example's `-F file=@model.onnx`
    blocks = re.findall(r"```bash\n(.*?)```", (servers.ROOT / "README.md").read_text(), flags=re.S)
    examples = [block for block in blocks if "curl" in block]
    assert len(examples) >= 2, "the README's curl examples moved: update this test's reading of them"
    features = orjson.dumps(demo_features()).decode()
    for example in examples:
        platform.sh(re.sub(r"\{[^{}]*\.\.\.[^{}]*\}", features, example))
    production = platform.json(curl_json("GET", "/v1/models", "ML_OPS_TOKEN"))["models"]
    assert [(model["name"], model["version"]) for model in production if model["role"] == "production"] == [("logreg", "1")]
