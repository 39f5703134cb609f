"""Micro-batching (`inference.microbatch`): concurrent single predictions of one model answered by
one session call, each answer what it would have been alone.

Concurrency is real (threads released together by a barrier, against the real sessions); a batch
is made deterministic without sleeping by letting it wait for as many rows as the test sends.
"""

import threading
import time

import pytest
from prometheus_client import REGISTRY

from audit import writer
from audit.models import PredictionLog
from inference import cache, microbatch, services
from inference.runtime import runtime
from inference.services import ServiceUnavailable, UnscorableInput
from inference.session import ModelTimeout
from inference.validation import feature_row
from mlops import services as registry
from mlops.demo import PRODUCT

pytestmark = pytest.mark.django_db(transaction=True)

OTHER = "other_score"


def _batching(settings, rows: int) -> None:
    """Batch every model up to ``rows`` rows; a batch waits for all of them (at most half the
    model's timeout, 10 s here), so that ``rows`` concurrent requests make exactly one batch."""
    settings.INFERENCE_MICROBATCH_MODELS = ["*"]
    settings.INFERENCE_MICROBATCH_MIN_RUN_US = 0
    settings.INFERENCE_MICROBATCH_MAX_ROWS = rows
    settings.INFERENCE_MICROBATCH_MAX_WAIT_US = 20_000_000
    settings.INFERENCE_MODEL_TIMEOUT_MS = 20_000


def _not_batching(settings) -> None:
    settings.INFERENCE_MICROBATCH_MODELS = []
    microbatch.reset()
    cache.reset()  # the same rows again must be run, not found


def _concurrently(calls: list) -> list:
    """Each call on its own thread, all released at once: their results (or exceptions), in order."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def work(index, call):
        barrier.wait(30)
        try:
            outcomes[index] = call()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=work, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def _predicting(product: str, events: list[dict], prefix: str = "e") -> list:
    return [lambda i=i, f=f: services.predict(event_id=f"{prefix}{i}", product=product, features=f) for i, f in enumerate(events)]


def _batch_rows(model) -> tuple[float, float]:
    """(session calls, rows) of ``mlops_inference_batch_rows`` for ``model``."""
    labels = {"product": model.spec.product, "model": model.label}
    count = REGISTRY.get_sample_value("mlops_inference_batch_rows_count", labels) or 0.0
    return count, REGISTRY.get_sample_value("mlops_inference_batch_rows_sum", labels) or 0.0


def _serve(validated_model, product: str = PRODUCT) -> None:
    registry.model_version_promote(model_version_id=validated_model.pk, user=None, reason="test")
    runtime.refresh()


def _failure(exc: Exception) -> tuple:
    return type(exc), getattr(exc, "code", None), str(exc)


def test_batched_answers_equal_answers_alone_each_with_its_own_id_and_log_row(validated, events, settings):
    _batching(settings, rows=8)
    _serve(validated("gbdt"))
    model = runtime.peek().routes[PRODUCT].production
    calls_before, rows_before = _batch_rows(model)

    batched = _concurrently(_predicting(PRODUCT, events[:8]))

    assert _batch_rows(model) == (calls_before + 1, rows_before + 8)  # one session call answered all eight
    _not_batching(settings)
    alone = [services.predict(event_id=f"e{i}", product=PRODUCT, features=f) for i, f in enumerate(events[:8])]
    assert _batch_rows(model) == (calls_before + 1, rows_before + 8)
    for together, single in zip(batched, alone, strict=True):
        assert not together.cached and not single.cached
        assert together.score == single.score
        assert together.decision == single.decision
        assert together.explain_summary == single.explain_summary and together.explain_summary
    ids = [prediction.prediction_id for prediction in batched]
    assert len(set(ids)) == 8
    assert writer.flush(10)
    logged = {row.prediction_id: row for row in PredictionLog.objects.filter(prediction_id__in=ids)}
    assert len(logged) == 8
    for prediction in batched:
        row = logged[prediction.prediction_id]
        assert (row.event_id, row.score, row.decision) == (prediction.event_id, prediction.score, prediction.decision)


def test_the_rows_histogram_counts_rows_per_session_call(validated, events, settings):
    _batching(settings, rows=4)
    _serve(validated("gbdt"))
    model = runtime.peek().routes[PRODUCT].production
    calls, rows = _batch_rows(model)
    _concurrently(_predicting(PRODUCT, events[:4]))
    assert _batch_rows(model) == (calls + 1, rows + 4)
    settings.INFERENCE_MICROBATCH_MAX_WAIT_US = 0  # alone, and nothing to wait for: it runs at once
    microbatch.reset()
    services.predict(event_id="lone", product=PRODUCT, features=events[10])
    assert _batch_rows(model) == (calls + 2, rows + 5)


def test_a_failing_batch_fails_only_its_own_requests_with_the_error_they_get_alone(push_misbehaving, push_demo, events, settings):
    _batching(settings, rows=4)
    _serve(push_misbehaving("failing"))
    gbdt = push_demo("gbdt", "1", product=OTHER)
    _serve(registry.model_version_validate(model_version_id=gbdt.pk, user=None, reason="test"))

    outcomes = _concurrently(_predicting(PRODUCT, events[:4], "f") + _predicting(OTHER, events[:4], "o"))

    failed, answered = outcomes[:4], outcomes[4:]
    _not_batching(settings)
    alone = [services.predict(event_id=f"o{i}", product=OTHER, features=f) for i, f in enumerate(events[:4])]
    with pytest.raises(ServiceUnavailable) as single_failure:
        services.predict(event_id="f0", product=PRODUCT, features=events[0])
    assert [_failure(exc) for exc in failed] == [_failure(single_failure.value)] * 4
    assert single_failure.value.code == "model_error"
    assert [(p.score, p.decision, p.explain_summary) for p in answered] == [(p.score, p.decision, p.explain_summary) for p in alone]


def test_a_graph_that_takes_one_row_at_a_time_is_not_batched(push_misbehaving, events, settings):
    _batching(settings, rows=4)
    _serve(push_misbehaving("fixed_batch"))

    outcomes = _concurrently(_predicting(PRODUCT, events[:4]))

    assert microbatch.batcher(runtime.peek().routes[PRODUCT].production) is None
    _not_batching(settings)
    alone = [services.predict(event_id=f"e{i}", product=PRODUCT, features=f) for i, f in enumerate(events[:4])]
    assert [p.score for p in outcomes] == [p.score for p in alone]


def test_a_batch_answered_with_the_wrong_number_of_rows_fails_its_requests_cleanly(push_misbehaving, events, settings):
    """The failing graph reshapes its rows to ``30 + int(max mean_radius)`` columns: four rows whose
    largest radius is in [10, 11) come back as three rows, an error (not a 500) for all four."""
    _batching(settings, rows=4)
    _serve(push_misbehaving("failing"))
    small = [*[f for f in events if 9 <= f["mean_radius"] < 10][:3], next(f for f in events if 10 <= f["mean_radius"] < 11)]

    outcomes = _concurrently(_predicting(PRODUCT, small))

    _not_batching(settings)
    with pytest.raises(ServiceUnavailable) as single_failure:
        services.predict(event_id="alone", product=PRODUCT, features=small[0])
    assert [_failure(exc) for exc in outcomes] == [_failure(single_failure.value)] * 4


def test_rows_scored_non_finite_fail_alone_and_the_rest_of_their_batch_is_answered(push_misbehaving, events, settings):
    _batching(settings, rows=7)
    _serve(push_misbehaving("non_finite"))
    large = [f for f in events if f["mean_radius"] > 25][:2]
    normal = [f for f in events if f["mean_radius"] < 20][:5]
    assert len(large) == 2

    outcomes = _concurrently(_predicting(PRODUCT, large + normal))

    _not_batching(settings)
    with pytest.raises(UnscorableInput) as single_failure:
        services.predict(event_id="alone", product=PRODUCT, features=large[0])
    assert [_failure(exc) for exc in outcomes[:2]] == [_failure(single_failure.value)] * 2
    alone = [services.predict(event_id=f"n{i}", product=PRODUCT, features=f) for i, f in enumerate(normal)]
    assert [(p.score, p.decision) for p in outcomes[2:]] == [(p.score, p.decision) for p in alone]


def test_a_batch_of_a_model_that_overruns_its_timeout_fails_on_time_as_one_run_does(push_misbehaving, events, settings):
    _batching(settings, rows=4)
    settings.INFERENCE_MODEL_TIMEOUTS_MS = {f"{PRODUCT}/slow": 100}
    _serve(push_misbehaving("slow"))
    slowest = sorted(events, key=lambda f: f["mean_radius"])[-4:]  # about a second each, uncancelled

    started = time.perf_counter()
    outcomes = _concurrently(_predicting(PRODUCT, slowest))
    elapsed = time.perf_counter() - started

    _not_batching(settings)
    with pytest.raises(ServiceUnavailable) as single_failure:
        services.predict(event_id="alone", product=PRODUCT, features=slowest[0])
    assert [_failure(exc) for exc in outcomes] == [_failure(single_failure.value)] * 4
    assert elapsed < 0.7  # generous: a batch waits at most half the 100 ms, and the run is cancelled at the oldest row's deadline


def test_a_request_queued_behind_a_stuck_batch_times_out_on_time(validated, events, settings):
    _batching(settings, rows=4)
    _serve(validated("gbdt"))
    model = runtime.peek().routes[PRODUCT].production
    row = feature_row(events[0], model.feature_names, model.dtype)
    batcher = microbatch.Batcher(model, max_rows=4, max_wait=0)
    running, release = threading.Event(), threading.Event()

    def stuck(model, matrix, timeout):
        running.set()
        release.wait(30)
        return [("first", [])] * len(matrix)

    first: list = []
    leader = threading.Thread(target=lambda: first.append(batcher.submit(stuck, model, row, timeout=30)))
    leader.start()
    assert running.wait(10)
    started = time.perf_counter()
    with pytest.raises(ModelTimeout):
        batcher.submit(stuck, model, row, timeout=0.05)
    waited = time.perf_counter() - started
    release.set()
    leader.join(10)

    assert 0.05 <= waited < 1.0
    assert first == [("first", [])]
    # The timed-out row left the queue: the next request runs alone, at once.
    assert batcher.submit(lambda model, matrix, timeout: [("next", len(matrix))], model, row, timeout=1) == ("next", 1)
