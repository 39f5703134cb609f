"""Answering: route, score, decide, explain, log, offer the shadow run (DESIGN.md §3).

Nothing here waits on the database, the model store or another model: the configuration and
the sessions come from the in-process snapshot (`inference.runtime`), the log record goes to
the audit writer's queue, and the shadow run to a bounded background pool after the answer is
computed.
"""

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
from django.conf import settings
from django.utils import timezone

from audit import writer
from audit.records import PredictionRecord
from inference import metrics, microbatch, routing, shadow
from inference.cache import cache_key, prediction_cache
from inference.decisions import CANARY, PRODUCTION, decide
from inference.explain import summarize
from inference.ids import new_prediction_id
from inference.predictions import Prediction, model_fields, span_attributes
from inference.runtime import Route, Snapshot, runtime
from inference.session import LoadedModel, ModelRunError, ModelTimeout, NonFiniteScore
from inference.validation import InferRequest, InvalidInput, feature_row, feature_rows
from mlops.observability.logging import log_context
from mlops.observability.tracing import span

logger = logging.getLogger(__name__)
# One INFO line per answered prediction, off by default (LOG_PREDICTIONS=true turns it on): the
# prediction log is the record of answers; this is for following them in the process's log.
answers_logger = logging.getLogger("inference.answers")


class ServiceUnavailable(Exception):
    """The request is valid but cannot be answered now (not loaded yet, model failing, log full)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class UnscorableInput(Exception):
    """Valid input that production cannot score: its score is not a finite number (extreme values
    overflow the model's arithmetic). Unlike a failing model, retrying cannot help; ``fields``
    names the features of each such row."""

    MESSAGE = "The model cannot score these values: its score for them is not a finite number."

    def __init__(self, fields: list[str]):
        super().__init__(self.MESSAGE)
        self.fields = {field: [self.MESSAGE] for field in fields}


def _production_failed(product: str, exc: ModelRunError, fields: list[str]) -> Exception:
    """What answers a request whose production run failed with ``exc`` (``fields``: the failed rows' features)."""
    if isinstance(exc, NonFiniteScore):
        return UnscorableInput(fields)
    return ServiceUnavailable("model_error", f"The model of {product!r} failed to answer.")


# --- one prediction ------------------------------------------------------------------------------


def predict(*, event_id: str, product: str, features: Mapping, request_id: str = "", client: str = "") -> Prediction:
    """Answer one request; raises `InvalidInput` or `ServiceUnavailable`.

    Every record logged while it is answered carries its request, prediction and event ids.
    """
    prediction_id = new_prediction_id()
    with log_context(request_id=request_id or None, prediction_id=str(prediction_id), event_id=event_id, product=product):
        prediction = _predict(prediction_id, event_id, product, features, request_id, client)
        _log_answer(prediction)
    return prediction


def _predict(prediction_id: uuid.UUID, event_id: str, product: str, features: Mapping, request_id: str, client: str) -> Prediction:
    started = time.perf_counter()
    route, row, model, role, model_row = _choose(_snapshot(), product, event_id, features)
    fallback_from, fallback_reason = None, ""
    try:
        (score, summary), source = _score(model, model_row)
    except ModelRunError as exc:
        _count_error(product, model, role, exc)
        if role != CANARY:
            raise _production_failed(product, exc, ["features"]) from None
        metrics.FALLBACKS.labels(product, exc.reason).inc()
        logger.warning("canary %s of %s fell back to production: %s", model.label, product, exc, extra=model_fields(model, role))
        fallback_from, fallback_reason = model, exc.reason
        model, role = route.production, PRODUCTION
        try:
            (score, summary), source = _score(model, row)
        except ModelRunError as exc2:
            _count_error(product, model, role, exc2)
            raise _production_failed(product, exc2, ["features"]) from None
    prediction = Prediction(
        prediction_id=prediction_id,
        event_id=event_id,
        product=product,
        model=model,
        role=role,
        score=score,
        decision=decide(score, model.threshold),
        explain_summary=summary,
        latency_ms=0.0,
        cached=source != "miss",
        fallback_from=fallback_from,
        fallback_reason=fallback_reason,
        features=features,
        client=client,
    )
    metrics.cache_counter(product, model.label, source).inc()
    elapsed = time.perf_counter() - started
    prediction.latency_ms = round(elapsed * 1000, 3)
    _log(prediction, request_id)
    _observe(prediction, elapsed)
    if route.shadow is not None and route.shadow.id != model.id and routing.in_shadow_sample(product, event_id, route.shadow_basis_points):
        shadow.schedule(route, [prediction], row, request_id)
    return prediction


def _choose(snapshot: Snapshot, product: str, event_id: str, features: Mapping) -> tuple[Route, np.ndarray, LoadedModel, str, np.ndarray]:
    """``(route, production's row, the model answering, its role, its row)`` of one request."""
    route = _route(snapshot, product)
    row, canary_row = _rows(route, features)
    if route.canary is not None and routing.in_canary(product, event_id, route.canary_basis_points):
        return route, row, route.canary, CANARY, canary_row
    return route, row, route.production, PRODUCTION, row


def _rows(route: Route, features: Mapping, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The request's row for production and for the canary, each in that model's feature order and
    input type (one row when they take the same, as without a canary: no extra work then).

    Both are checked whatever the event's bucket: a request is accepted or refused the same way
    whichever model it reaches, and a canary run that fails falls back to production's row.
    """
    if not route.canary_has_own_input:
        row = feature_row(features, route.feature_names, route.production.dtype, prefix)
        return row, row
    production_row, canary_row = feature_rows(features, (route.production, route.canary), prefix)
    return production_row, canary_row


def _snapshot() -> Snapshot:
    snapshot = runtime.snapshot()
    if snapshot is None:
        raise ServiceUnavailable("not_ready", "The models are still loading; retry shortly.")
    return snapshot


def _route(snapshot: Snapshot, product: str, prefix: str = "") -> Route:
    route = snapshot.routes.get(product)
    if route is None:
        if product in snapshot.expected:
            raise ServiceUnavailable("not_ready", f"The model of {product!r} is not loaded yet; retry shortly.")
        raise InvalidInput({f"{prefix}product": [f"Unknown product {product!r}."]}, "unknown_product")
    return route


def _score(model: LoadedModel, row: np.ndarray) -> tuple[tuple[float, list], str]:
    """``((score, explanation), cache source)`` for one row, computed at most once at a time."""

    key = cache_key(model.id, row)
    batcher = microbatch.batcher(model)

    def compute() -> tuple[float, list]:
        scored = microbatch.scored_together(key)
        if scored is not None:
            return scored
        if batcher is not None:
            return batcher.submit(_score_matrix, model, row, timeout=model.timeout)
        return _score_matrix(model, row, model.timeout)[0]

    with span("model_inference", **span_attributes(model), rows=1) as s:
        result = prediction_cache().get_or_compute(key, compute, wait=model.timeout * 2)
        s.set(cache=result[1])
    return result


def _prediction_fields(prediction: Prediction) -> dict:
    return {
        "prediction_id": str(prediction.prediction_id),
        "event_id": prediction.event_id,
        "decision": prediction.decision,
        "latency_ms": prediction.latency_ms,
        **model_fields(prediction.model, prediction.role),
    }


def _log_answer(prediction: Prediction) -> None:
    if answers_logger.isEnabledFor(logging.INFO):  # a cached check: next to free when the line is off
        answers_logger.info("answered", extra=_prediction_fields(prediction))


def _explain(model: LoadedModel, matrix: np.ndarray) -> list[list]:
    """Explanation summaries per row; an explanation that fails is empty, never an error."""
    try:
        contributions = model.contributions(matrix)
    except Exception as exc:
        logger.warning("explanation of %s failed: %s", model.label, exc)
        metrics.ERRORS.labels(model.spec.product, model.label, "explain", "explain").inc()
        return [[] for _ in range(matrix.shape[0])]
    return [summarize(model.feature_names, matrix[i], contributions[i]) for i in range(matrix.shape[0])]


def _count_error(product: str, model: LoadedModel, role: str, exc: ModelRunError) -> None:
    metrics.ERRORS.labels(product, model.label, role, exc.reason).inc()


def _observe(prediction: Prediction, elapsed: float) -> None:
    label = prediction.model.label
    status = "fallback" if prediction.fallback_from is not None else "ok"
    metrics.request_counter(prediction.product, label, prediction.role, prediction.decision, status).inc()
    metrics.latency_histogram(prediction.product, label, prediction.role).observe(elapsed)


def _record(prediction: Prediction, request_id: str) -> PredictionRecord:
    """The answer's log record; the shadow fields are left to their defaults."""
    return {
        "prediction_id": prediction.prediction_id,
        "request_id": request_id,
        "client": prediction.client,
        "event_id": prediction.event_id,
        "product": prediction.product,
        "model_version_id": prediction.model.uuid,
        "role": prediction.role,
        "features": prediction.features,
        "score": prediction.score,
        "decision": prediction.decision,
        "threshold": prediction.model.threshold,
        "explain_summary": prediction.explain_summary,
        "latency_ms": prediction.latency_ms,
        "cached": prediction.cached,
        "fallback_from_id": prediction.fallback_from.uuid if prediction.fallback_from else None,
        "fallback_reason": prediction.fallback_reason,
        "created_at": timezone.now(),
    }


def _log(prediction: Prediction, request_id: str) -> None:
    """Hand the record to the audit writer. A 200 must have a log row, so a refusal is a 503."""
    try:
        writer.submit(_record(prediction, request_id))
    except Exception:
        logger.exception("the prediction log refused a record", extra=_prediction_fields(prediction))
        metrics.ERRORS.labels(prediction.product, prediction.model.label, prediction.role, "log").inc()
        raise ServiceUnavailable("log_unavailable", "The prediction log cannot accept records; retry shortly.") from None


def score_together(items: list[InferRequest]) -> dict[str, tuple[float, list]]:
    """Single requests that arrived together (the hot lane, `inference.microbatch`), scored ahead:
    per batched model, one session call of at most ``INFERENCE_MICROBATCH_MAX_ROWS`` of their rows
    not in the cache. Returns ``{cache key: (score, explanation) or the batch's ModelTimeout}``,
    which answering each request then takes instead of running (`_score`). A request this cannot
    score otherwise (refused input, a run that fails, a batch of one) is left out and runs alone,
    so that it gets the answer or error it gets alone."""
    snapshot = runtime.peek()
    if snapshot is None:
        return {}
    cache = prediction_cache()
    groups: dict[str, tuple[LoadedModel, dict[str, np.ndarray]]] = {}
    for item in items:
        try:
            _, _, model, _, row = _choose(snapshot, item.product, item.event_id, item.features)
        except (InvalidInput, ServiceUnavailable):
            continue
        key = cache_key(model.id, row)
        if microbatch.batcher(model) is not None and cache.get(key) is None:
            groups.setdefault(model.id, (model, {}))[1][key] = row
    scored = {}
    chunk = settings.INFERENCE_MICROBATCH_MAX_ROWS
    for model, rows in groups.values():
        keys = list(rows)
        for start in range(0, len(keys), chunk):
            batch = keys[start : start + chunk]
            if len(batch) < 2:
                continue
            microbatch.observe(model, len(batch))
            try:
                scored.update(zip(batch, _score_matrix(model, np.vstack([rows[key] for key in batch]), model.timeout), strict=True))
            except ModelTimeout as exc:  # alone, each would wait as long again: they time out now
                scored.update(dict.fromkeys(batch, exc))
            except ModelRunError:  # perhaps this batch only (non-finite rows): each runs alone
                continue
    return scored


# --- batch ---------------------------------------------------------------------------------------


def predict_batch(
    *, items: list[InferRequest | None], request_id: str = "", client: str = "", problems: InvalidInput | None = None
) -> list[Prediction]:
    """Answer several requests with one session run per model (cache hits excluded).

    All items are validated first; any invalid item refuses the whole batch, naming
    ``items.<i>.<field>``. ``None`` items were already refused by the envelope check
    (`inference.validation.infer_batch_request`), whose ``problems`` are reported together with the features' problems of the others. A
    canary run that fails falls back to production for its rows.
    """
    with log_context(request_id=request_id or None):
        predictions = _predict_batch(items, request_id, client, problems)
        for prediction in predictions:
            _log_answer(prediction)
    return predictions


def _predict_batch(items: list[InferRequest | None], request_id: str, client: str, problems: InvalidInput | None) -> list[Prediction]:
    started = time.perf_counter()
    snapshot = _snapshot()
    routes: list[Route] = []
    rows: list[np.ndarray] = []  # production's
    canary_rows: list[np.ndarray] = []
    for index, item in enumerate(items):
        prefix = f"items.{index}."
        if item is None:
            continue
        try:
            route = _route(snapshot, item.product, prefix)
            row, canary_row = _rows(route, item.features, prefix)
            rows.append(row)
            canary_rows.append(canary_row)
            routes.append(route)
        except InvalidInput as exc:
            if problems is None:
                problems = exc
            else:
                problems.merge(exc)
    if problems is not None:
        raise problems

    chosen: list[tuple[LoadedModel, str]] = []
    for item, route in zip(items, routes, strict=True):
        if route.canary is not None and routing.in_canary(item.product, item.event_id, route.canary_basis_points):
            chosen.append((route.canary, CANARY))
        else:
            chosen.append((route.production, PRODUCTION))
    results: list[tuple | None] = [None] * len(items)  # (score, summary, cached)
    fallbacks: dict[int, tuple[LoadedModel, str]] = {}

    groups: dict[str, list[int]] = defaultdict(list)
    for index, (model, _role) in enumerate(chosen):
        groups[model.id].append(index)
    # Canary groups first, so that their fallbacks join the production run of the same product.
    ordered = sorted(groups.items(), key=lambda entry: chosen[entry[1][0]][1] != CANARY)
    pending_production: dict[str, list[int]] = defaultdict(list)
    for _model_id, indices in ordered:
        model, role = chosen[indices[0]]
        if role == PRODUCTION:
            pending_production[model.id].extend(indices)
            continue
        try:
            _score_rows(model, indices, canary_rows, results)
        except ModelRunError as exc:
            _count_error(model.spec.product, model, role, exc)
            metrics.FALLBACKS.labels(model.spec.product, exc.reason).inc(len(indices))
            logger.warning(
                "canary %s fell back to production for %d batch rows: %s",
                model.label,
                len(indices),
                exc,
                extra=model_fields(model, role),
            )
            for index in indices:
                fallbacks[index] = (model, exc.reason)
                chosen[index] = (routes[index].production, PRODUCTION)
                pending_production[routes[index].production.id].append(index)
    for indices in pending_production.values():
        model = chosen[indices[0]][0]
        try:
            _score_rows(model, indices, rows, results)
        except ModelRunError as exc:
            _count_error(model.spec.product, model, PRODUCTION, exc)
            failed = [f"items.{indices[row]}.features" for row in getattr(exc, "rows", ())]
            raise _production_failed(model.spec.product, exc, failed) from None

    elapsed = time.perf_counter() - started
    latency_ms = round(elapsed * 1000, 3)
    predictions = []
    for index, item in enumerate(items):
        model, role = chosen[index]
        score, summary, cached = results[index]
        fallback_from, fallback_reason = fallbacks.get(index, (None, ""))
        prediction = Prediction(
            prediction_id=new_prediction_id(),
            event_id=item.event_id,
            product=item.product,
            model=model,
            role=role,
            score=score,
            decision=decide(score, model.threshold),
            explain_summary=summary,
            latency_ms=latency_ms,
            cached=cached,
            fallback_from=fallback_from,
            fallback_reason=fallback_reason,
            features=item.features,
            client=client,
        )
        metrics.cache_counter(item.product, model.label, "hit" if cached else "miss").inc()
        _log(prediction, request_id)
        _observe(prediction, elapsed)
        predictions.append(prediction)

    shadow_groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, (prediction, route) in enumerate(zip(predictions, routes, strict=True)):
        if (
            route.shadow is not None
            and route.shadow.id != prediction.model.id
            and routing.in_shadow_sample(prediction.product, prediction.event_id, route.shadow_basis_points)
        ):
            shadow_groups[(route.product, route.shadow.id)].append(index)
    for indices in shadow_groups.values():
        route = routes[indices[0]]
        shadow.schedule(route, [predictions[i] for i in indices], np.vstack([rows[i] for i in indices]), request_id)
    return predictions


def _score_rows(model: LoadedModel, indices: list[int], rows: list[np.ndarray], results: list) -> None:
    """Fill ``results[i]`` for ``indices``: cache hits first, the rest in one session run."""
    cache = prediction_cache()
    misses = []
    keys = {}
    for index in indices:
        key = keys[index] = cache_key(model.id, rows[index])
        value = cache.get(key)
        if value is not None:
            results[index] = (value[0], value[1], True)
        else:
            misses.append(index)
    if not misses:
        return
    matrix = np.vstack([rows[i] for i in misses])
    with span("model_inference", **span_attributes(model), rows=len(indices), misses=len(misses)):
        scored = _score_matrix(model, matrix, model.timeout * max(1, len(misses) / 32))
    for index, (score, summary) in zip(misses, scored, strict=True):
        cache.put(keys[index], (score, summary))
        results[index] = (score, summary, False)


def _score_matrix(model: LoadedModel, matrix: np.ndarray, timeout: float) -> list[tuple[float, list]]:
    """``(score, explanation)`` per row of ``matrix``: one scoring run (cancelled after ``timeout``) and one explanation."""
    scores = model.run(matrix, timeout=timeout)
    return list(zip(scores.tolist(), _explain(model, matrix), strict=True))
