"""Reads of the serving path: what this process serves and whether it is ready (from the runtime's
snapshot), and recorded predictions (from the log writer while it holds them, else the database).

None of them changes anything, and none runs on the request path of ``POST /v1/infer``.
"""

import time
import uuid

from django.conf import settings

from audit import writer
from audit.models import PredictionLog
from audit.records import DEFAULTS, READ_BACK, plain
from inference.decisions import CANARY, PRODUCTION, SHADOW
from inference.ids import issued_at_ms
from inference.runtime import runtime
from mlops.artifacts.onnx_schema import describe_inputs
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
    return PredictionLog.objects.filter(pk=prediction_id).values().first()


def model_version_labels(*, model_version_ids) -> dict:
    """``{id: version}`` for the given model version ids."""
    return dict(ModelVersion.objects.filter(pk__in=list(model_version_ids)).values_list("pk", "version"))
