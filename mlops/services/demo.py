"""The demo platform: product ``fraud_score`` with two registered models and an admin user.

``logreg@1`` serves; ``gbdt@1`` is validated (so the rollout page can start it as a canary) and
runs as the production model's shadow, so that the live and comparison pages show shadow
differences as soon as traffic arrives (``manage.py demo_traffic``).
"""

import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from mlops.artifacts.stores import ModelStore
from mlops.choices import ApiCapability, ModelStatus
from mlops.demo import PRODUCT, build_demo_models, write_demo_reference
from mlops.models import ApiKey, ModelVersion, ShadowOverride
from mlops.security.ratelimits import role_admits
from mlops.security.roles import Role
from mlops.services.api_keys import api_key_create
from mlops.services.dual_models import dual_model_demo_ensure
from mlops.services.lifecycle import LifecycleError, model_push, model_version_promote, model_version_validate
from mlops.services.rollout import shadow_enable

PRODUCTION_DEMO = "logreg"
SHADOW_DEMO = "gbdt"
CREDENTIALS_FILE = "demo-credentials.txt"
DEMO_CLIENT = "demo"
TRAFFIC_CLIENT = "demo-traffic"


@dataclass
class DemoReport:
    lines: list[str] = field(default_factory=list)


def demo_bootstrap(*, store: ModelStore, admin_username: str, admin_password: str | None) -> DemoReport:
    """Create what is missing of the demo; running it again changes nothing."""
    report = DemoReport()
    missing = [name for name in ("logreg", "gbdt") if not ModelVersion.objects.filter(product=PRODUCT, name=name, version="1").exists()]
    if missing:
        with tempfile.TemporaryDirectory() as folder:
            reference = write_demo_reference(Path(folder))  # the training data: what drift compares traffic with
            for demo in build_demo_models(Path(folder)):
                if demo.name in missing:
                    pushed = model_push(
                        source=demo.path,
                        store=store,
                        product=PRODUCT,
                        name=demo.name,
                        version=demo.version,
                        threshold=demo.threshold,
                        description=demo.description,
                        reference=reference,
                    )
                    report.lines.append(f"registered {pushed}")
    if not ModelVersion.objects.filter(product=PRODUCT, status=ModelStatus.PRODUCTION).exists():
        model = ModelVersion.objects.get(product=PRODUCT, name=PRODUCTION_DEMO, version="1")
        with transaction.atomic():
            if model.status == ModelStatus.CANDIDATE:
                model_version_validate(model_version_id=model.pk, user=None, reason="demo bootstrap")
            model_version_promote(model_version_id=model.pk, user=None, reason="demo bootstrap")
        report.lines.append(f"promoted {model} to production")
    report.lines.append(_ensure_admin(admin_username, admin_password))
    report.lines.append(_ensure_demo_api_key())
    # The dual-model stream (POST /stream/v1/infer) works right after bootstrap: logreg fast, gbdt full.
    report.lines.append(dual_model_demo_ensure(product=PRODUCT))
    report.lines.extend(_ensure_demo_shadow())
    return report


def _ensure_demo_shadow() -> list[str]:
    """``gbdt@1`` validated and shadowing all of production, unless someone already chose a shadow."""
    if ShadowOverride.objects.filter(product=PRODUCT).exists():
        return [f"shadow of {PRODUCT!r} set before (unchanged)"]
    model = ModelVersion.objects.get(product=PRODUCT, name=SHADOW_DEMO, version="1")
    if model.status not in (ModelStatus.CANDIDATE, ModelStatus.VALIDATED):
        return [f"no demo shadow: {model} is {model.status}"]
    lines = []
    if model.status == ModelStatus.CANDIDATE:
        try:
            model_version_validate(model_version_id=model.pk, user=None, reason="demo bootstrap: the canary to try")
            lines.append(f"validated {model}")
        except LifecycleError as exc:  # e.g. a backtest is required first: a candidate may still shadow
            lines.append(f"{model} stays a candidate: {exc}")
    shadow_enable(product=PRODUCT, shadow_model_id=model.pk, sample_percent=100, user=None, reason="demo bootstrap")
    lines.append(f"{model} shadows all of {PRODUCT!r} production traffic")
    return lines


def _ensure_admin(username: str, password: str | None) -> str:
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return f"admin user {username!r} exists (password unchanged)"
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email="", password=password)
    if not generated:
        return f"created admin user {username!r} with the given password"
    where = _save_credentials({"username": username, "password": password})
    return f"created admin user {username!r} with password {password} (also in {where})"


def _ensure_demo_api_key() -> str:
    """An ``inference_client`` key for trying the API; keys are shown once, so it is saved too."""
    if ApiKey.objects.filter(client=DEMO_CLIENT).exists():
        return f"API key of client {DEMO_CLIENT!r} exists (see {Path(settings.VAR_DIR) / CREDENTIALS_FILE})"
    _, key = api_key_create(client=DEMO_CLIENT, role=Role.INFERENCE_CLIENT, label="created by bootstrap_demo")
    where = _save_credentials({f"api key ({DEMO_CLIENT}, {Role.INFERENCE_CLIENT})": key})
    return f"created API key for client {DEMO_CLIENT!r}: {key} (also in {where})"


def _save_credentials(entries: dict[str, str]) -> Path:
    """Write ``label: value`` lines to the credentials file, replacing the lines of the same labels
    (a database bootstrapped afresh must not leave the previous, now unknown, key above the new one)."""
    credentials = Path(settings.VAR_DIR) / CREDENTIALS_FILE
    credentials.parent.mkdir(parents=True, exist_ok=True)
    lines = credentials.read_text().splitlines() if credentials.exists() else []
    kept = [line for line in lines if line.partition(": ")[0] not in entries]
    text = "\n".join([*kept, *(f"{label}: {value}" for label, value in entries.items())]) + "\n"
    temporary = credentials.with_suffix(".tmp")
    temporary.touch(mode=0o600)  # secrets: never readable by others, not even for a moment
    temporary.write_text(text)
    temporary.replace(credentials)
    return credentials


def demo_traffic_key_create(*, rate: float, outcome_batches_per_second: float) -> tuple[ApiKey, str]:
    """A day's key for ``manage.py demo_traffic`` whose rate limits admit its traffic.

    The demo client's role (``inference_client``) when its limits admit ``rate`` predictions and the
    outcome batches a second; otherwise ``internal_service``, which no limit applies to (a demo's 30
    a minute would answer most of a few requests a second with 429). The command revokes it at the end.
    """
    fits = role_admits(Role.INFERENCE_CLIENT, ApiCapability.PREDICT, per_second=rate) and role_admits(
        Role.INFERENCE_CLIENT, ApiCapability.POST_OUTCOMES, per_second=outcome_batches_per_second
    )
    role = Role.INFERENCE_CLIENT if fits else Role.INTERNAL_SERVICE
    return api_key_create(client=TRAFFIC_CLIENT, role=role, expires_in_days=1, label=f"manage.py demo_traffic at {rate:g}/s")
