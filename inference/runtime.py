"""The process-wide runtime: onnxruntime sessions per model version and the serving snapshot.

The request path only ever reads ``runtime.snapshot()``: one attribute read of an immutable
`Snapshot` (per product: production, canary and shadow sessions, shares, thresholds and
schemas). Everything that touches the database, the model store or the disk happens in
`Runtime.refresh`, called by a background thread that

- reads the configuration generation (`mlops.background.config_generation`) every
  ``INFERENCE_GENERATION_POLL_SECONDS`` and rebuilds when it changed, and
- rebuilds unconditionally every ``INFERENCE_RELOAD_SECONDS`` (a missed bump, a Redis
  outage, or a refused model to retry), and
- reports what the process serves (`report_worker`, for the rollout page) after each rebuild
  and at least every ``SERVING_WORKER_REPORT_SECONDS``.

A rebuild loads what is new (download verified against the registered sha256, the bytes
re-hashed in memory and the session built from those bytes so nothing can change between
check and use, a warm-up run and explanation on a synthetic row), then publishes the new
snapshot with one reference assignment. Requests already running keep the old snapshot and
its sessions until they finish; nothing is closed under them (sessions are freed by
reference counting when the last request lets go).

A model that cannot be loaded (checksum mismatch, unreadable or failing graph, schema that
does not match) is refused, logged and counted, and the product keeps serving what it served
before in that role (see `_route`).

The thread starts lazily in each process (`mlops.background.process.ProcessLocal`: gunicorn
forks workers, and a forked child drops what it inherited and loads its own sessions). Its
state is ``"loading"`` until the first snapshot, then ``"loaded"`` after every rebuild.
"""

import logging
import threading
import time
from dataclasses import replace
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import connections
from django.utils import timezone

from inference import metrics
from inference.serving_config import ModelSpec, ProductConfig, serving_config
from inference.session import LoadedModel, ModelLoadError, load_model
from inference.snapshot import Refusal, Route, Snapshot
from inference.workers import worker_report
from mlops.background import config_generation, resilience
from mlops.background.process import ProcessLocal
from mlops.observability.tracing import span

logger = logging.getLogger(__name__)


class Runtime:
    def __init__(self):
        self._snapshot: Snapshot | None = None
        self._refresh_lock = threading.Lock()  # serialises rebuilds; never taken by a request
        self._first_load = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_full = 0.0
        self._started_at: datetime | None = None  # when this process's runtime started
        self._reported_at = 0.0  # time.monotonic() of the last worker report (tried)
        self._report_failing = False
        # state: "loading" until the refresher's first snapshot, then "loaded" after every rebuild
        self.process = ProcessLocal("serving refresher", self._start, after_fork=self._drop_inherited)

    # --- request path -------------------------------------------------------------------
    def snapshot(self) -> Snapshot | None:
        """The current snapshot. Starts the refresher in a new process and, only while the
        process has never loaded, waits up to ``INFERENCE_STARTUP_WAIT_SECONDS`` for it."""
        self.process.ensure_started()
        snapshot = self._snapshot
        if snapshot is None and self._thread is not None:
            self._first_load.wait(settings.INFERENCE_STARTUP_WAIT_SECONDS)
            snapshot = self._snapshot
        return snapshot

    def peek(self) -> Snapshot | None:
        """The current snapshot without waiting (health and readiness probes)."""
        self.process.ensure_started()
        return self._snapshot

    # --- lifecycle ----------------------------------------------------------------------
    def ensure_started(self) -> None:
        self.process.ensure_started()

    def _start(self) -> None:
        self._started_at = timezone.now()
        self._reported_at = 0.0
        self._thread = None
        if settings.INFERENCE_BACKGROUND_REFRESH:
            if self._snapshot is None:
                self.process.set_state("loading")
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="inference-refresher", daemon=True)
            self._thread.start()

    def _drop_inherited(self) -> None:
        # Forked: the parent's sessions, thread and locks are not ours; this process loads its own.
        self._snapshot = None
        self._first_load = threading.Event()
        self._stop = threading.Event()
        self._refresh_lock = threading.Lock()
        self._thread = None

    def stop(self) -> None:
        """Stop the refresher (tests)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def reset(self) -> None:
        """Forget everything loaded and stop the refresher (tests)."""
        self.stop()
        self.process.forget()
        self._snapshot = None
        self._first_load.clear()
        self._thread = None
        self._last_full = 0.0
        self._started_at = None
        self._reported_at = 0.0

    def _loop(self) -> None:
        poll = settings.INFERENCE_GENERATION_POLL_SECONDS
        retry_at = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            refreshed = False
            try:
                snapshot = self._snapshot
                due = snapshot is None or now - self._last_full >= settings.INFERENCE_RELOAD_SECONDS
                if not due and now >= retry_at:
                    due = config_generation.current() != snapshot.generation
                if due:
                    resilience.database_call("serving_refresh", self.refresh)
                    refreshed = True
            except Exception as exc:
                if not isinstance(exc, resilience.DependencyUnavailable):  # an open circuit has its metric
                    logger.exception("serving snapshot refresh failed; the previous one keeps serving")
                retry_at = now + min(5.0, settings.INFERENCE_RELOAD_SECONDS)
            finally:
                self._first_load.set()
                if refreshed or time.monotonic() - self._reported_at >= settings.SERVING_WORKER_REPORT_SECONDS:
                    self.report_worker()
                connections.close_all()  # this thread's connections only; back to the pool
            self._stop.wait(poll)

    def report_worker(self) -> bool:
        """Record in the registry what this process serves (the rollout page's serving workers).

        Best effort and never raises: a failed report must not affect serving; the next one follows
        within ``SERVING_WORKER_REPORT_SECONDS``, so it is tried once (no retries in this thread,
        which also picks up configuration changes). Not for the request path.
        """
        snapshot = self._snapshot
        if snapshot is None:  # nothing served yet: nothing to report
            return False
        if self._started_at is None:  # refreshed without the refresher (tests, a shell)
            self._started_at = timezone.now()
        self._reported_at = time.monotonic()  # a failed report is tried again on the next interval, not every poll
        try:
            resilience.database_call("serving_worker_report", partial(worker_report, snapshot, started_at=self._started_at), retry=False)
        except Exception as exc:
            if not self._report_failing:  # once per outage; an open circuit has its own metric
                logger.warning("could not report this serving worker: %s", exc)
            else:
                logger.debug("could not report this serving worker: %s", exc)
            self._report_failing = True
            return False
        self._report_failing = False
        return True

    # --- rebuild ------------------------------------------------------------------------
    def refresh(self) -> Snapshot:
        """Rebuild the snapshot from the registry and publish it. Not for the request path."""
        with self._refresh_lock:
            try:
                snapshot = self._build()
            except Exception:
                metrics.REFRESHES.labels("error").inc()
                raise
            self._snapshot = snapshot  # the swap: one reference assignment
            self._last_full = time.monotonic()
            self._first_load.set()
            self.process.set_state("loaded")
            metrics.REFRESHES.labels("ok").inc()
            metrics.MODELS_LOADED.set(len(snapshot.models))
            for product in snapshot.expected:
                route = snapshot.routes.get(product)
                metrics.CANARY_RATIO.labels(product).set(route.canary_basis_points / 10_000 if route and route.canary else 0.0)
            return snapshot

    def _build(self) -> Snapshot:
        generation = config_generation.current()  # read first: a change during the build triggers another
        configs = serving_config()
        previous = self._snapshot
        loaded = previous.models if previous else {}
        refused = dict(previous.refused) if previous else {}
        now = time.monotonic()

        def obtain(spec: ModelSpec | None) -> LoadedModel | None:
            if spec is None:
                return None
            model = loaded.get(spec.id)
            if model is not None:
                return replace(model, spec=spec) if model.spec != spec else model
            refusal = refused.get(spec.id)
            if refusal is not None and now < refusal.retry_after:
                return None
            try:
                with span("model_load", product=spec.product, model_id=spec.id, model_name=spec.name, model_version=spec.version):
                    model = load_model(spec)
            except ModelLoadError as exc:
                reason = str(exc)
                logger.error("refused model %s/%s@%s (%s): %s", spec.product, spec.name, spec.version, spec.id, reason)
                metrics.MODEL_LOADS.labels(spec.product, f"{spec.name}@{spec.version}", "refused").inc()
                refused[spec.id] = Refusal(
                    spec.product, f"{spec.name}@{spec.version}", reason, timezone.now(), now + settings.INFERENCE_RELOAD_SECONDS
                )
                return None
            logger.info("loaded model %s/%s@%s (%s)", spec.product, spec.name, spec.version, spec.id)
            metrics.MODEL_LOADS.labels(spec.product, model.label, "ok").inc()
            refused.pop(spec.id, None)
            loaded[spec.id] = model
            return model

        routes = {}
        for config in configs:
            route = self._route(config, obtain, previous.routes.get(config.product) if previous else None)
            if route is not None:
                routes[config.product] = route
        wanted = {spec.id for config in configs for spec in (config.production, config.canary, config.shadow) if spec}
        return Snapshot(
            generation=generation,
            routes=routes,
            expected={config.product: config.production.id for config in configs},
            refused={key: value for key, value in refused.items() if key in wanted},
            built_at=timezone.now(),
        )

    @staticmethod
    def _route(config: ProductConfig, obtain, previous: Route | None) -> Route | None:
        """The product's new route; a role whose new model was refused keeps its previous model.

        Production refused: the previous production keeps answering (no production before: the
        product is not served and the process is not ready). Canary refused: the previous
        canary and share stay, or there is no canary. Shadow refused: the previous shadow.
        """
        production = obtain(config.production)
        if production is None:
            if previous is None:
                return None
            production = previous.production
        canary, canary_bp = obtain(config.canary), config.canary_basis_points
        if config.canary is not None and canary is None and previous is not None:
            canary, canary_bp = previous.canary, previous.canary_basis_points
        shadow, shadow_bp = obtain(config.shadow), config.shadow_basis_points
        if config.shadow is not None and shadow is None and previous is not None:
            shadow, shadow_bp = previous.shadow, previous.shadow_basis_points
        # A canary or shadow may take the features in another order or input type (each model gets
        # its row in its own, `inference.validation.feature_rows`), not other features.
        if canary is not None and (canary.id == production.id or set(canary.feature_names) != set(production.feature_names)):
            canary, canary_bp = None, 0
        if shadow is not None and (shadow.id == production.id or set(shadow.feature_names) != set(production.feature_names)):
            shadow, shadow_bp = None, 0
        return Route(config.product, production, canary, canary_bp if canary else 0, shadow, shadow_bp if shadow else 0)


runtime = Runtime()
