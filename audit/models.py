"""What the platform did: the immutable prediction log and the ground truth that comes later."""

import uuid

from django.conf import settings
from django.db import models

from mlops.choices import Decision, ModelRole
from mlops.models import ModelVersion


class DiffClass(models.TextChoices):
    MINIMAL = "minimal", "Minimal"
    MODERATE = "moderate", "Moderate"
    SIGNIFICANT = "significant", "Significant"


class PredictionLog(models.Model):
    """One model run that answered (or shadowed) a request. Append-only.

    A request produces one row for the model that answered (role ``production`` or
    ``canary``) and, when a shadow ran, one more row (role ``shadow``) that points at the
    answering row through ``primary_prediction_id`` and carries the comparison with it.
    Keeping the shadow in its own row lets the answer be logged at once and never rewritten.

    On PostgreSQL the table is partitioned by ``created_at`` and its primary key is
    ``(prediction_id, created_at)`` (migration 0008, `audit.partitions`); the model keeps
    ``prediction_id`` as its key, which is unique all the same (the service makes it).
    """

    prediction_id = models.UUIDField(primary_key=True, editable=False, help_text="Made by the service; idempotency key.")
    request_id = models.CharField(max_length=64, blank=True)
    client = models.CharField(max_length=200, blank=True, help_text="The API client that asked; clients read only their own.")
    event_id = models.CharField(max_length=200)
    product = models.SlugField(max_length=64)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=16, choices=ModelRole.choices)
    features = models.JSONField(help_text="After redaction.")
    score = models.FloatField()
    decision = models.CharField(max_length=8, choices=Decision.choices)
    threshold = models.FloatField(help_text="The model version's threshold when it decided.")
    explain_summary = models.JSONField(default=list)
    latency_ms = models.FloatField()
    cached = models.BooleanField(default=False)
    # Canary route that failed over to production: which model failed and why.
    fallback_from = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    fallback_reason = models.CharField(max_length=32, blank=True)
    # Shadow rows only: the answering prediction and how far this one is from it.
    primary_prediction_id = models.UUIDField(null=True, blank=True)
    score_diff = models.FloatField(null=True, blank=True, help_text="|primary score - shadow score|")
    diff_class = models.CharField(max_length=12, choices=DiffClass.choices, blank=True)
    decision_agrees = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(help_text="When the prediction was made (not when the row was written).")

    class Meta:
        ordering = ["-created_at"]
        # Rows are written by the log writer, never through the admin: only "view" exists, plus the
        # retention permission (the one delete path, `manage.py audit_retention`).
        default_permissions = ("view",)
        permissions = [("purge_predictionlog", "Can delete prediction log rows older than the retention period")]
        indexes = [
            models.Index(fields=["product", "created_at"]),
            models.Index(fields=["product", "role", "created_at"]),
            models.Index(fields=["model_version", "created_at"]),
            models.Index(fields=["event_id"]),
            models.Index(fields=["primary_prediction_id"]),
            # Newest first by (created_at, prediction_id): the admin's keyset pages and the exports.
            models.Index(fields=["created_at", "prediction_id"], name="audit_predictionlog_keyset"),
        ]

    def __str__(self) -> str:
        return f"{self.prediction_id} {self.product} {self.role} {self.decision}"


class Outcome(models.Model):
    """Ground truth observed later for a prediction or an event (e.g. a confirmed fraud)."""

    product = models.SlugField(max_length=64)
    event_id = models.CharField(max_length=200)
    prediction_id = models.UUIDField(null=True, blank=True)
    label = models.BooleanField(help_text="True when the event really was positive (e.g. fraud).")
    observed_at = models.DateTimeField()
    source = models.CharField(max_length=100, default="api")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-observed_at"]
        # Outcomes arrive through the API and `import_outcomes`; the admin only shows them.
        default_permissions = ("add", "view")
        constraints = [models.UniqueConstraint(fields=["product", "event_id", "source"], name="outcome_once_per_event_and_source")]
        indexes = [models.Index(fields=["product", "observed_at"]), models.Index(fields=["prediction_id"])]

    def __str__(self) -> str:
        return f"{self.product}/{self.event_id}: {self.label}"


# --- Dual-model stream runs (POST /stream/v1/infer) ---


class DualRunRecord(models.Model):
    """One run of the dual-model stream: both models' outputs, latencies and errors. Write-once.

    ``run_id`` is the idempotency key: a request naming a recorded run id gets the recorded
    ``events`` back instead of a new run.
    """

    run_id = models.CharField(max_length=64, unique=True)
    product = models.SlugField(max_length=64)
    event_id = models.CharField(max_length=200)
    features = models.JSONField(help_text="After redaction.")
    fast_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    full_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    fast_output = models.JSONField(null=True, blank=True, help_text="Score and decision, when the fast model answered.")
    full_output = models.JSONField(null=True, blank=True, help_text="Score and decision, when the full model answered.")
    fast_latency_ms = models.FloatField(null=True, blank=True)
    full_latency_ms = models.FloatField(null=True, blank=True)
    errors = models.JSONField(default=list, help_text="[{model, code, message}] of the runs that failed or timed out.")
    events = models.JSONField(default=list, help_text="The events sent, as sent (replayed for a repeated run id).")
    disconnected = models.BooleanField(default=False, help_text="The client left before the stream ended.")
    total_latency_ms = models.FloatField(default=0.0)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        default_permissions = ("view",)
        indexes = [models.Index(fields=["product", "created_at"])]

    def __str__(self) -> str:
        return f"dual run {self.run_id} ({self.product})"


# --- Backtests (a candidate scored on logged production traffic: inference/backtests.py) ---


class BacktestStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Backtest(models.Model):
    """One backtest of a model version on the production rows of its product's log, and its report.

    Written by `inference.backtests` as it runs (status and progress by conditional updates), read
    by the API, the admin and the validation gate (`audit.backtests.backtest_gate`). The report is
    the dict `audit.backtests.backtest_report` builds.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    product = models.SlugField(max_length=64)
    last = models.PositiveIntegerField(null=True, blank=True, help_text="At most this many of the newest production rows.")
    since = models.DateTimeField(null=True, blank=True, help_text="Only production rows logged at or after this time.")
    status = models.CharField(max_length=8, choices=BacktestStatus.choices, default=BacktestStatus.QUEUED)
    rows_total = models.PositiveIntegerField(default=0, help_text="Rows to replay (known once running).")
    rows_done = models.PositiveIntegerField(default=0)
    report = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        default_permissions = ("add", "view")
        indexes = [models.Index(fields=["model_version", "status", "finished_at"])]

    def __str__(self) -> str:
        return f"backtest {self.id} of {self.model_version_id} ({self.status})"


# --- Drift (audit/drift/): the inputs of the log against each model version's baseline ---


class DriftBaselineSource(models.TextChoices):
    REFERENCE = "reference", "Reference file pushed with the model"
    BACKTEST = "backtest", "The logged rows a backtest replayed"
    PREDICTIONS = "predictions", "The first predictions of its production period"


class DriftBaseline(models.Model):
    """What a model version's inputs looked like when it was made: per-feature histograms and the score's.

    Built once per version by `audit.drift.services.drift_baseline_ensure`, from the best source
    there is (`DriftBaselineSource`, in that order of preference). ``features`` maps each monitored
    feature to ``{"edges": [...], "counts": [...]}`` (`audit.drift.psi`: quantile edges, an overflow
    bin on each side); ``not_monitored`` maps the others to why (redacted in the log, no numbers).
    """

    model_version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=16, choices=DriftBaselineSource.choices)
    source_detail = models.CharField(max_length=1024, blank=True, help_text="The file, the backtest or the rows it came from.")
    rows = models.PositiveIntegerField()
    features = models.JSONField()
    score = models.JSONField(null=True, blank=True, help_text="{edges, counts} of the model's score on the same rows.")
    not_monitored = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"drift baseline of {self.model_version_id} ({self.source})"


class DriftWindow(models.Model):
    """One drift evaluation of a model version's logged answers over ``[window_start, window_end)``.

    Written by the drift job every ``DRIFT_INTERVAL_SECONDS`` and kept ``DRIFT_HISTORY_DAYS`` (the
    PSI-over-time chart). The live counts of each feature are in its `DriftMeasurement`; the next
    window starts from them (`audit.drift.services`: only the rows that entered or left are read).
    """

    product = models.SlugField(max_length=64)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    baseline = models.ForeignKey(DriftBaseline, on_delete=models.CASCADE, related_name="windows")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    rows = models.PositiveIntegerField(help_text="Logged answers of the model in the window.")
    rows_read = models.PositiveIntegerField(help_text="Log rows this evaluation read (the ones that entered or left the window).")
    incremental = models.BooleanField(help_text="Built from the previous window's counts rather than a full count.")
    max_psi = models.FloatField(null=True, blank=True, help_text="The largest feature PSI (null below DRIFT_MIN_ROWS rows).")
    duration_ms = models.FloatField(default=0.0)
    evaluated_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-window_end"]
        default_permissions = ("view",)
        indexes = [models.Index(fields=["product", "window_end"]), models.Index(fields=["model_version", "window_end"])]

    def __str__(self) -> str:
        return f"drift of {self.product} at {self.window_end:%Y-%m-%d %H:%M:%S}"


class DriftMeasurement(models.Model):
    """The PSI of one feature (or of the score: ``feature`` is empty, ``is_score``) in one window, with the live counts."""

    window = models.ForeignKey(DriftWindow, on_delete=models.CASCADE, related_name="measurements")
    feature = models.CharField(max_length=200, blank=True)
    is_score = models.BooleanField(default=False)
    psi = models.FloatField(null=True, blank=True)
    counts = models.JSONField(help_text="Live counts per baseline bin.")

    class Meta:
        ordering = ["window", "-psi"]
        default_permissions = ("view",)
        constraints = [models.UniqueConstraint(fields=["window", "feature", "is_score"], name="drift_measurement_once_per_window")]

    def __str__(self) -> str:
        return f"{'score' if self.is_score else self.feature}: {self.psi}"


# --- Rollups (audit/rollups/): the log summed per minute and per hour, written with it ---


class RollupPeriod(models.IntegerChoices):
    MINUTE = 60, "Minute"
    HOUR = 3600, "Hour"


class PredictionRollup(models.Model):
    """The log rows of one product, role, model version and failover source in one minute or hour, summed.

    Written by the log writer in the transaction that inserts the rows (`audit.rollups.store`),
    corrected when outcomes arrive, and rebuilt from the raw rows by ``manage.py audit_rollup``.
    Health, the summary, the comparison, the rollout page and the guard read these instead of the
    rows (`audit.rollups.selectors`). ``counts``, ``latency_ms`` and ``score`` are the stored form
    of `audit.rollups.figures.Figures`.
    """

    period_seconds = models.PositiveIntegerField(choices=RollupPeriod.choices)
    period_start = models.DateTimeField()
    product = models.SlugField(max_length=64)
    role = models.CharField(max_length=16, choices=ModelRole.choices)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    fallback_from = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    counts = models.JSONField(default=dict)
    latency_ms = models.JSONField(default=dict, help_text="Latency histogram: bucket -> answers (audit.rollups.histograms).")
    score = models.JSONField(default=list, help_text="Score histogram: SCORE_BINS equal bins of [0, 1].")

    class Meta:
        default_permissions = ("view",)
        constraints = [
            # Two partial indexes instead of one with NULLS NOT DISTINCT, which SQLite lacks.
            models.UniqueConstraint(
                fields=["period_seconds", "product", "period_start", "role", "model_version"],
                condition=models.Q(fallback_from__isnull=True),
                name="rollup_once_per_period",
            ),
            models.UniqueConstraint(
                fields=["period_seconds", "product", "period_start", "role", "model_version", "fallback_from"],
                condition=models.Q(fallback_from__isnull=False),
                name="rollup_failover_once_per_period",
            ),
        ]

    def __str__(self) -> str:
        period = self.get_period_seconds_display()
        return f"{self.product} {self.role} {self.model_version_id} at {self.period_start:%Y-%m-%d %H:%M} ({period})"
