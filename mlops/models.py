"""The model registry: model versions and the per-product rollout configuration."""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from simple_history.models import HistoricalRecords

from mlops.choices import BASIS_POINTS_MAX, ApiCapability, ModelStatus, Role


class ChangeStamp(models.Model):
    """Who made the last change, when and why; history rows keep every earlier one."""

    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    changed_at = models.DateTimeField(null=True, blank=True)
    change_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        abstract = True


class ModelVersion(ChangeStamp):
    """One immutable ONNX artifact of a product's model, and where it is in its lifecycle.

    The artifact itself never changes: a new model is a new version. Only the lifecycle
    status (and the who/when/why of its last change) moves, through `mlops.services`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    product = models.SlugField(max_length=64)
    name = models.CharField(max_length=100)
    version = models.CharField(max_length=100)
    artifact_uri = models.CharField(max_length=1024)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(default=0)
    input_schema = models.JSONField(help_text="Ordered feature names and types, read from the ONNX graph.")
    output_schema = models.JSONField(default=dict, help_text="The model's outputs and which one is the score.")
    threshold = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Score at or above which the decision is 'block'.",
    )
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    loaded_at = models.DateTimeField(null=True, blank=True, help_text="When the artifact was last downloaded and verified.")
    promoted_at = models.DateTimeField(null=True, blank=True, help_text="When it last became production.")
    rolled_back_at = models.DateTimeField(null=True, blank=True, help_text="When it was last rolled back from production.")
    # Drift: the reference rows pushed with the model (mlops.artifacts.reference), beside model.onnx in the store.
    reference_uri = models.CharField(max_length=1024, blank=True, help_text="The reference file the drift baseline is built from, if any.")
    reference_sha256 = models.CharField(max_length=64, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["product", "-created_at"]
        permissions = [("manage_lifecycle", "Can validate, promote, roll back and archive model versions")]
        constraints = [
            models.UniqueConstraint(fields=["product", "name", "version"], name="model_version_unique_per_product"),
            # The database, not a comment, guarantees a single production version per product.
            models.UniqueConstraint(
                fields=["product"], condition=Q(status=ModelStatus.PRODUCTION), name="one_production_version_per_product"
            ),
            models.CheckConstraint(condition=Q(status__in=ModelStatus.values), name="model_version_status_valid"),
            models.CheckConstraint(condition=Q(threshold__gte=0.0, threshold__lte=1.0), name="model_version_threshold_0_1"),
        ]
        indexes = [models.Index(fields=["product", "status"])]

    def __str__(self) -> str:
        return f"{self.product}/{self.name}@{self.version}"

    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.input_schema.get("features", [])]


class CanaryConfig(ChangeStamp):
    """The canary of one product: which version takes which share of the traffic."""

    product = models.SlugField(max_length=64, unique=True)
    production_model = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    canary_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    canary_basis_points = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(BASIS_POINTS_MAX)])
    started_at = models.DateTimeField(null=True, blank=True)
    # When the canary reached its current share: automatic promotion counts its minimum sample
    # from here, so a step is decided on the traffic it took at that step.
    step_started_at = models.DateTimeField(null=True, blank=True)
    auto_promote = models.BooleanField(
        default=False,
        help_text="The rollout guard steps the canary up the ladder and promotes it once it is shown non-inferior (off: people step it).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        permissions = [("manage_rollout", "Can start, step, stop and promote canaries and control shadows")]
        constraints = [
            models.CheckConstraint(
                condition=Q(canary_basis_points__gte=0, canary_basis_points__lte=BASIS_POINTS_MAX),
                name="canary_basis_points_range",
            ),
            models.CheckConstraint(condition=~Q(canary_model=F("production_model")), name="canary_differs_from_production"),
        ]

    def __str__(self) -> str:
        return f"canary of {self.product}"

    @property
    def canary_percent(self) -> float:
        return self.canary_basis_points / 100


class ShadowOverride(ChangeStamp):
    """A runtime override of a product's shadow model over the environment default."""

    product = models.SlugField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    shadow_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    sample_basis_points = models.PositiveIntegerField(default=BASIS_POINTS_MAX, validators=[MaxValueValidator(BASIS_POINTS_MAX)])
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(sample_basis_points__gte=0, sample_basis_points__lte=BASIS_POINTS_MAX),
                name="shadow_sample_basis_points_range",
            ),
            models.CheckConstraint(condition=Q(enabled=False) | Q(shadow_model__isnull=False), name="enabled_shadow_has_model"),
        ]

    def __str__(self) -> str:
        return f"shadow override of {self.product}"


class RollbackReason(models.TextChoices):
    """Why a canary was rolled back (the guard's measured breaches, or a person)."""

    HIGH_ERROR_RATE = "high_error_rate", "High error rate"
    HIGH_LATENCY = "high_latency", "High latency"
    FP_RATE_THRESHOLD = "fp_rate_threshold", "False-positive rate over threshold"
    SHADOW_SIGNIFICANT_DIFF = "shadow_significant_diff", "Significant shadow differences"
    MANUAL = "manual", "Manual"


class RollbackEvent(models.Model):
    """One rollback of a product's canary, with what was measured. Write-once.

    The guard writes one when its sequential test shows a canary beyond a limit over all of the
    canary's traffic since it started (and stops the canary in the same transaction); a person rolling back from the rollout page writes one
    with reason ``manual``.
    """

    product = models.SlugField(max_length=64)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+", help_text="The canary that was stopped.")
    production_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=32, choices=RollbackReason.choices)
    canary_basis_points = models.PositiveIntegerField(default=0, help_text="The canary's share when it was stopped.")
    measured = models.JSONField(
        default=dict,
        help_text=(
            "The statistic (count, total, estimate), its confidence sequence, the always-valid p-value, the limit "
            "and the sample sizes of both sides."
        ),
    )
    window_seconds = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["product", "created_at"])]

    def __str__(self) -> str:
        return f"rollback of {self.product} ({self.reason}) at {self.created_at:%Y-%m-%d %H:%M:%S}"


# --- API keys (security) ---


class ApiKey(models.Model):
    """A credential of one API client; a client may hold several (rotation, one per service).

    The key is ``mlk_<prefix>.<secret>``: the prefix is stored in clear to find the row, the
    secret only as its SHA-256. The secret is 256 random bits, so a fast hash is enough (no
    salt or slow hash is needed against guessing) and verification costs microseconds. The
    plaintext is returned once by ``mlops.services.api_key_create`` and never stored.
    Keys are never edited or deleted: they expire or are revoked, and the row stays as a record.
    """

    client = models.CharField(max_length=100, help_text="Who uses the key (a service or partner name).")
    role = models.CharField(max_length=32, choices=Role.choices)
    label = models.CharField(max_length=200, blank=True, help_text="What this key is for (e.g. 'checkout, eu-west').")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_sha256 = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = "API key"
        ordering = ["client", "-created_at"]
        # ``revoke_apikey`` guards the admin's revoke action; the ``api_*`` permissions are the
        # API capabilities that role groups (and so staff users) are granted (mlops.security.roles).
        permissions = [("revoke_apikey", "Can revoke API keys")] + [
            (f"api_{capability}", f"API: {label}") for capability, label in ApiCapability.choices
        ]
        constraints = [models.CheckConstraint(condition=Q(role__in=Role.values), name="api_key_role_valid")]
        indexes = [models.Index(fields=["client"])]

    def __str__(self) -> str:
        return f"{self.client} ({self.role}) mlk_{self.prefix}…"


# --- Dual-model streams (POST /stream/v1/infer) ---


class DualModelConfig(ChangeStamp):
    """A product's fast and full model for the dual-model stream, each with its own timeout.

    ``POST /stream/v1/infer`` runs both at once: the fast model answers as ``preliminary``, the
    full one as ``final``. Changed only through ``mlops.services.dual_model_set``.
    """

    product = models.SlugField(max_length=64, unique=True)
    fast_model = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+", help_text="Answers first (preliminary).")
    full_model = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+", help_text="Answers last (final).")
    fast_timeout_ms = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(60_000)], help_text="A longer fast run is cancelled."
    )
    full_timeout_ms = models.PositiveIntegerField(
        default=2_000, validators=[MinValueValidator(1), MaxValueValidator(60_000)], help_text="A longer full run is cancelled."
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = "dual-model configuration"
        constraints = [
            models.CheckConstraint(condition=~Q(fast_model=F("full_model")), name="dual_fast_differs_from_full"),
            models.CheckConstraint(
                condition=Q(fast_timeout_ms__gte=1, full_timeout_ms__gte=1, fast_timeout_ms__lte=60_000, full_timeout_ms__lte=60_000),
                name="dual_timeouts_range",
            ),
        ]

    def __str__(self) -> str:
        return f"dual models of {self.product}"


# --- Serving configuration generation (operational state, not audited) ---


class ConfigGeneration(models.Model):
    """The one row that counts serving configuration changes when no shared cache is configured
    (`mlops.background.config_generation`): every process of the installation reads the same number."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="config_generation_single_row")]

    def __str__(self) -> str:
        return f"configuration generation {self.value}"


# --- Serving workers (operational state, not audited) ---


class ServingWorker(models.Model):
    """What one serving process (a gunicorn worker of ``web``, a daphne ``stream`` process) last
    said it serves: its configuration generation and, per product, its models and shares.

    Written by the process's runtime refresher (``mlops.services.serving_worker_report``), never by
    a request; rows of processes gone for ``SERVING_WORKER_FORGET_SECONDS`` are deleted. State, not
    a record: no history.
    """

    worker = models.CharField(max_length=300, primary_key=True, help_text='"<hostname>:<pid>"')
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(help_text="When this process's serving runtime started.")
    seen_at = models.DateTimeField(db_index=True, help_text="When the process last reported.")
    generation = models.BigIntegerField(help_text="The serving configuration generation of its snapshot.")
    routes = models.JSONField(
        default=dict,
        help_text='Per product: {"production": label, "canary": label or null, "canary_percent": float, "shadow": label or null}.',
    )

    class Meta:
        ordering = ["hostname", "pid"]

    def __str__(self) -> str:
        return self.worker
