"""Reads of the serving path: what this process serves and whether it is ready (from the runtime's
snapshot), recorded predictions (from the log writer while it holds them, else the database), and
a model version's health over a window (the log's one definition, beside how this process loaded it).

None of them changes anything, and none runs on the request path of ``POST /v1/infer``.
"""

import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from audit import writer
from audit.models import PredictionLog
from audit.records import DEFAULTS, READ_BACK, issued_at_ms, plain
from audit.selectors import pages
from audit.selectors.health import Side, model_health
from inference.decisions import CANARY, PRODUCTION, SHADOW
from inference.runtime import runtime
from mlops.artifacts.onnx_schema import describe_inputs
from mlops.choices import ModelRole
from mlops.models import ModelVersion

# The inference API's names for the record fields it does not call by their column name.
_API_NAMES = {"model_version_id": "model_id", "role": "model_role", "fallback_from_id": "fallback_from"}


def prediction_get(*, prediction_id: uuid.UUID, client: str | None = None) -> dict | None:
    """A recorded prediction: from the log writer while this process holds it, else the database.

    With ``client`` only that client's predictions are found (others' look absent, not forbidden,
    so ids of other clients' predictions are not confirmed to exist).
    """
    record = writer.lookup(prediction_id) or _logged(prediction_id)
    if record is None or (client is not None and record.get("client", "") != client):
        return None
    snapshot = runtime.peek()
    loaded = snapshot.models.get(str(record["model_version_id"])) if snapshot else None
    if loaded is not None:
        version = loaded.spec.version
    else:
        version = model_version_labels(model_version_ids=[record["model_version_id"]]).get(record["model_version_id"], "")
    answer = {}
    for key in READ_BACK:
        answer[_API_NAMES.get(key, key)] = plain(record.get(key, DEFAULTS.get(key)))
        if key == "model_version_id":
            answer["model_version"] = version  # the version's label beside its id
    return answer


def serving_models() -> dict:
    """What this process serves: loaded models with role and input schema, and refused versions with the reason."""
    snapshot = runtime.peek()
    if snapshot is None:
        return {"ready": False, "generation": None, "models": [], "total": 0, "refused": []}
    models = []
    for product, route in sorted(snapshot.routes.items()):
        for model, role, share in (
            (route.production, PRODUCTION, None),
            (route.canary, CANARY, route.canary_basis_points),
            (route.shadow, SHADOW, route.shadow_basis_points),
        ):
            if model is None:
                continue
            entry = {
                "model_id": model.id,
                "product": product,
                "name": model.spec.name,
                "version": model.spec.version,
                "role": str(role),
                "threshold": model.threshold,
                "explain_method": model.explainer.method,
                "loaded_at": model.loaded_at.isoformat(),
                "input_schema": describe_inputs(model.spec.input_schema),
            }
            if share is not None:
                entry["basis_points"] = share
            models.append(entry)
    refused = [
        {"model_id": key, "product": value.product, "model": value.label, "reason": value.reason, "at": value.at.isoformat()}
        for key, value in sorted(snapshot.refused.items())
    ]
    return {"ready": snapshot.ready, "generation": snapshot.generation, "models": models, "total": len(models), "refused": refused}


def readiness() -> tuple[bool, dict]:
    """Ready when every product with a production version is served by a loaded, warmed model."""
    snapshot = runtime.peek()
    if snapshot is None:
        return False, {"status": "loading"}
    if snapshot.ready:
        return True, {"status": "ready", "generation": snapshot.generation}
    return False, {"status": "loading", "missing": sorted(p for p in snapshot.expected if p not in snapshot.routes)}


READ_BACK_POLL_SECONDS = 0.05


def _logged(prediction_id: uuid.UUID) -> dict | None:
    """The prediction from the database; for an id only moments old, wait for it to get there.

    Another worker (or pod) may have answered it and still hold it in its log writer's batch
    (``AUDIT_FLUSH_INTERVAL``). A time-ordered id says how old it is, so a read-back right after
    the answer waits until ``INFERENCE_READ_BACK_WAIT_SECONDS`` after the id was made, and an older
    or unknown id answers at once. Only ``GET /v1/infer/{id}`` waits, never a prediction.
    """
    record = prediction_log_get(prediction_id=prediction_id)
    issued = issued_at_ms(prediction_id)
    if record is not None or issued is None:
        return record
    # An id from the future (a clock ahead, or made up) waits no longer than one made now.
    wait = min(issued / 1000, time.time()) + settings.INFERENCE_READ_BACK_WAIT_SECONDS - time.time()
    deadline = time.monotonic() + wait  # the wait itself on the monotonic clock: a clock step cannot stretch it
    while record is None and time.monotonic() < deadline:
        time.sleep(min(READ_BACK_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        record = prediction_log_get(prediction_id=prediction_id)
    return record


def prediction_log_get(*, prediction_id: uuid.UUID) -> dict | None:
    """A recorded prediction from the database, as the writer's record dict, or None."""
    return pages.by_prediction_id(PredictionLog.objects.all(), prediction_id).values().first()


def model_version_labels(*, model_version_ids) -> dict:
    """``{id: version}`` for the given model version ids."""
    return dict(ModelVersion.objects.filter(pk__in=list(model_version_ids)).values_list("pk", "version"))


def model_version_health(*, model_version: ModelVersion, window: timedelta) -> dict:
    """How ``model_version`` did over the last ``window``, per role it played (`audit.selectors.health`,
    the numbers the comparison and the dashboard show), and how this process loaded it.

    ``serving`` is this process's copy (None when it does not serve the version): its load time and
    warm-up; ``loaded_at`` is the registry's, when a process last downloaded and verified the artifact.
    """
    until = timezone.now()
    since = until - window
    roles = [model_health(Side(model_version.product, role, model_version.pk), since=since, until=until) for role in ModelRole.values]
    snapshot = runtime.peek()
    serving = None
    for product, route in sorted((snapshot.routes if snapshot else {}).items()):
        for model, role in ((route.production, PRODUCTION), (route.canary, CANARY), (route.shadow, SHADOW)):
            if model is not None and model.id == str(model_version.pk) and product == model_version.product:
                serving = {"role": str(role), "loaded_at": model.loaded_at, "warm_up_ms": model.warm_up_ms}
    return {
        "model_id": model_version.pk,
        "product": model_version.product,
        "model": f"{model_version.name}@{model_version.version}",
        "status": model_version.status,
        "window_seconds": int(window.total_seconds()),
        "since": since,
        "until": until,
        "roles": [health for health in roles if health["requests"]],
        "loaded_at": model_version.loaded_at,
        "serving": serving,
    }
