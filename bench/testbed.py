"""The throw-away platform the benchmark serves: database, cache, model store, demo, scenario.

A fresh PostgreSQL database and a Redis key prefix when they answer on localhost (SQLite and the
in-memory cache otherwise), a temporary model store; then ``bootstrap_demo`` (``fraud_score``,
logistic regression in production) and the headline configuration of ``configure()``.
"""

import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Rate limits on, as in production, but too high to bite: the check still runs on every request.
RATE_LIMITS = {"RATELIMIT_ENABLE": "1", "RATELIMIT_PREDICT": "100000000/m", "RATELIMIT_PREDICT_BURST": "10000000/s"}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def prepare_environment(scratch: Path, args) -> dict:
    """The environment of every platform process (the harness's Django too)."""
    env = {
        "DJANGO_SETTINGS_MODULE": "mlops.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback; TLS ends at the proxy in production
        "MODEL_STORE_URL": (scratch / "store").as_uri(),
        "MODEL_CACHE_DIR": str(scratch / "cache"),
        "AUDIT_SPILL_DIR": str(scratch / "spill"),
        "CACHE_KEY_PREFIX": f"bench-{os.getpid()}",
        "CHANNEL_PREFIX": f"bench-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": str(args.threads),
        "WEB_WORKER_CLASS": args.worker_class,
        **RATE_LIMITS,
    }
    env.update(item.split("=", 1) for item in args.env)
    if _reachable("127.0.0.1", 5432) and not args.sqlite:
        name = f"mlops_bench_{os.getpid()}"
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{scratch / 'db.sqlite3'}"
    if _reachable("127.0.0.1", 6379) and not args.no_redis:
        env["REDIS_URL"] = "redis://127.0.0.1:6379/14"
    return env


def drop_database(env: dict) -> None:
    """Drop the benchmark's PostgreSQL database (SQLite goes with the scratch folder)."""
    if not env["DATABASE_URL"].startswith("postgres"):
        return
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()
    name = env["DATABASE_URL"].rsplit("/", 1)[1]
    command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"]
    subprocess.run(command, check=False)


@dataclass
class Platform:
    key: str  # an inference_client key: rate limited (internal_service is exempt)
    metrics_key: str  # an internal_service key, for /metrics only
    model_path: Path  # the production model's ONNX file, as every worker downloads it
    feature_names: list[str]
    rows: list[list[float]]  # the demo's data set: real feature vectors to vary


def bootstrap(env: dict) -> Platform:
    """Migrate and build the headline scenario: a canary at 10% and the gbdt shadowing 10%."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections
    from sklearn.datasets import load_breast_cancer

    from mlops import services
    from mlops.artifacts.stores import download_verified, store_from_url
    from mlops.choices import Role
    from mlops.demo import PRODUCT, demo_feature_names
    from mlops.models import ModelVersion

    call_command("migrate", verbosity=0)
    os.environ.setdefault("DEMO_ADMIN_PASSWORD", secrets.token_urlsafe(16))
    call_command("bootstrap_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    production = ModelVersion.objects.get(product=PRODUCT, status="production")
    model_path = download_verified(production.artifact_uri, production.sha256)
    # The canary: the production file pushed again as version 2 (what `manage.py push_model` does),
    # so the canary side runs the same model through its own session, cache entries and log rows.
    canary = services.model_push(
        source=model_path, store=store_from_url(), product=PRODUCT, name=production.name, version="2", threshold=production.threshold
    )
    services.model_version_validate(model_version_id=canary.pk, user=None, reason="bench: canary")
    services.canary_set(product=PRODUCT, canary_model_id=canary.pk, canary_percent=10, user=None, reason="bench: canary at 10%")
    gbdt = ModelVersion.objects.get(product=PRODUCT, name="gbdt", version="1")
    if gbdt.status == "candidate":
        services.model_version_validate(model_version_id=gbdt.pk, user=None, reason="bench")
    set_shadow(10)
    _, key = services.api_key_create(client="bench", role=Role.INFERENCE_CLIENT)
    _, metrics_key = services.api_key_create(client="bench-metrics", role=Role.INTERNAL_SERVICE)
    connections.close_all()
    rows = [[float(value) for value in row] for row in load_breast_cancer().data]
    return Platform(key, metrics_key, model_path, demo_feature_names(), rows)


def set_shadow(percent: int) -> None:
    """The gbdt model shadows ``percent`` % of events (every serving process sees it within 2 s)."""
    from django.db import connections

    from mlops import services
    from mlops.demo import PRODUCT
    from mlops.models import ModelVersion

    gbdt = ModelVersion.objects.get(product=PRODUCT, name="gbdt", version="1")
    services.shadow_enable(product=PRODUCT, shadow_model_id=gbdt.pk, sample_percent=percent, user=None, reason=f"bench: shadow {percent}%")
    connections.close_all()
