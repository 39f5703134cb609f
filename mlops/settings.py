"""Settings, read from the environment (django-environ).

With no environment at all the project runs the *embedded default*: SQLite, a local model
folder under ``var/`` and in-memory cache and channel layer. Production switches each layer
by one variable: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL`` (cache, rate limits, channel
layer) and ``MODEL_STORE_URL`` (``file:///...`` or ``s3://bucket/prefix``).
"""

import socket
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from mlops.demo import PRODUCT as DEMO_PRODUCT

BASE_DIR = Path(__file__).resolve().parent.parent


class _MountedSecrets(environ.FileAwareMapping):
    """The environment, where ``NAME_FILE`` names a file holding NAME's value, as secret stores mount
    them (Vault Agent, the Secrets Store CSI driver, Kubernetes secrets as files); the line end that
    templates and ``echo`` leave is not part of the secret."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return value.rstrip("\r\n") if self.env.get(key + "_FILE") else value


env = environ.FileAwareEnv()
env.ENVIRON = _MountedSecrets()
environ.Env.read_env(BASE_DIR / ".env")  # optional; absent in the embedded default

# SQLite database, model store, model cache and spill files of the embedded default.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=True)

_DEV_SECRET = "embedded-default-insecure-secret-key-change-me-for-production-use"  # noqa: S105 (refused when DEBUG is off)
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == _DEV_SECRET):
    raise ImproperlyConfigured("SECRET_KEY must be set to a real secret when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off.")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "mlops.apps.PlatformAdminConfig",  # django.contrib.admin with the platform's site (the product dashboard)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "simple_history",
    "channels",
    "django_prometheus",
    "mlops.apps.MlopsConfig",
    "inference.apps.InferenceConfig",
    "audit.apps.AuditConfig",
]

MIDDLEWARE = [
    # First and last: django-prometheus times the whole stack (request counts, latency by view).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "mlops.urls"
WSGI_APPLICATION = "mlops.wsgi.application"
ASGI_APPLICATION = "mlops.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg 3's pool, managed by Django; the pool requires CONN_MAX_AGE=0. With health checks on,
    # Django has the pool check each connection (one empty round trip) as it leaves the pool, so
    # that after a database restart or failover nobody is handed a dead one. Only work that
    # queries pays it; the request path of inference does not query.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # JIT off (unless the URL's `options` says otherwise): the log's reads are short and bounded,
    # but the planner prices a LIMIT over a per-row subquery at the whole window's rows, so
    # PostgreSQL compiled each of the comparison's sample reads, ~27 ms of a ~130 ms query.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c jit=off")
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=8),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
else:
    # Writers wait for SQLite's lock instead of failing at once. The timeout alone does not make
    # them wait: a transaction that read before it writes (every service: select, then update)
    # and finds another process's write under way gets "database is locked" at once, since SQLite
    # does not wait on a lock it could deadlock on. Transactions that take the write lock as they
    # begin (IMMEDIATE) queue for it instead; serving does not open transactions, so it loses nothing.
    for option, value in (("timeout", 20), ("transaction_mode", "IMMEDIATE")):
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault(option, value)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, rate limits and channel layer ----------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="mlops"),
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNEL_PREFIX", default="mlops")},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Where the serving configuration generation lives (`mlops.background.config_generation`): it must be
# shared by every process of the installation, so without Redis it is a row in the database.
CONFIG_GENERATION_STORE = env.str("CONFIG_GENERATION_STORE", default="cache" if REDIS_URL else "database")

# --- Model store ----------------------------------------------------------------------------
MODEL_STORE_URL = env.str("MODEL_STORE_URL", default=(VAR_DIR / "model-store").as_uri())
MODEL_CACHE_DIR = Path(env.str("MODEL_CACHE_DIR", default=str(VAR_DIR / "model-cache")))
AWS_ENDPOINT_URL = env.str("AWS_ENDPOINT_URL", default="") or None

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "static"))

# --- History --------------------------------------------------------------------------------
# Registry history is a record, not an undo button: every change goes through a service.
SIMPLE_HISTORY_REVERT_DISABLED = True
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True  # reasons are sentences, not labels

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mlops.api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": ["mlops.api.content.OrjsonParser"],
    "DEFAULT_RENDERER_CLASSES": ["mlops.api.content.OrjsonRenderer"],
    # Secure by default even for views that do not derive from mlops.api.base.BaseAPIView.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "mlops.security.authentication.TokenAuthentication",
        "mlops.security.authentication.StaffSessionAuthentication",
        "mlops.security.authentication.DevBypassAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["mlops.api.permissions.HasApiCapability"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MLOps platform API",
    "DESCRIPTION": "Model registry, canary/shadow rollouts and ONNX inference.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Production hardening (active when DEBUG is off) ----------------------------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Health probes come over plain HTTP from inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Logging (mlops/logging.py) -------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (timestamp, level, logger, message and, when present,
# request_id, prediction_id, event_id, product, model, model_version, role, decision, latency_ms);
# LOG_FORMAT=human: readable lines. JSON by default in production (DEBUG off), human otherwise.
LOG_FORMAT = env.str("LOG_FORMAT", default="human" if DEBUG else "json")
# LOG_PREDICTIONS=true: one INFO line per answered prediction (logger inference.answers) with its
# fields. Off by default: the prediction log already records every answer, durably.
LOG_PREDICTIONS = env.bool("LOG_PREDICTIONS", default=False)
if LOG_FORMAT not in ("json", "human"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'human', not {LOG_FORMAT!r}.")
# Who wrote a log line (or a span): the service, named by OpenTelemetry's variable so that logs and
# traces agree, and the host or pod (POD_NAME from Kubernetes' downward API, else the hostname,
# which in a pod is its name). Every JSON line carries both.
SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="mlops")
HOST_NAME = env.str("POD_NAME", default="") or socket.gethostname()
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "mlops.observability.logging.ContextFilter"}},
    "formatters": {
        "human": {"()": "mlops.observability.logging.HumanFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "mlops.observability.logging.JsonFormatter",
            "format": "%(levelname)s %(name)s %(message)s",
            "static_fields": {"service": SERVICE_NAME, "host": HOST_NAME},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Configuring Django's logger drops the handlers of Django's default logging (its own console
        # handler under DEBUG), so that each django.* record is one line, in our format, through the root.
        "django": {"level": LOG_LEVEL},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "inference.answers": {"level": "INFO" if LOG_PREDICTIONS else "WARNING"},
    },
}

# --- Audit (prediction log) -----------------------------------------------------------------
# |primary score - shadow score| at or above these is a moderate / significant difference.
SHADOW_DIFF_MODERATE = env.float("SHADOW_DIFF_MODERATE", default=0.05)
SHADOW_DIFF_SIGNIFICANT = env.float("SHADOW_DIFF_SIGNIFICANT", default=0.2)

# --- Inference ---
# The serving path (inference/). Every value has an environment variable of the same name.
# Shadow model per product when no ShadowOverride row says otherwise: {"product": "<model version id>"}.
SHADOW_MODELS = env.json("SHADOW_MODELS", default={})
# In-process TTL LRU of (score, explanation) per model version and feature vector.
INFERENCE_CACHE_MAX_ITEMS = env.int("INFERENCE_CACHE_MAX_ITEMS", default=5_000)
INFERENCE_CACHE_TTL_SECONDS = env.float("INFERENCE_CACHE_TTL_SECONDS", default=300.0)
# How long after a prediction id was made GET /v1/infer/{id} waits for it to reach the log, when
# another worker answered it (its writer's batch: AUDIT_FLUSH_INTERVAL, plus the write).
INFERENCE_READ_BACK_WAIT_SECONDS = env.float("INFERENCE_READ_BACK_WAIT_SECONDS", default=1.0)
# Optional second tier in the shared (Redis) cache: one network round trip per miss, so off by default.
INFERENCE_CACHE_SHARED = env.bool("INFERENCE_CACHE_SHARED", default=False)
# After the tier fails (or hangs up to the cache's socket timeout) it is skipped for this long, plus jitter.
INFERENCE_CACHE_SHARED_PROBE_SECONDS = env.float("INFERENCE_CACHE_SHARED_PROBE_SECONDS", default=5.0)
# A model run longer than this is cancelled (RunOptions.terminate); a canary then falls back to production.
INFERENCE_MODEL_TIMEOUT_MS = env.float("INFERENCE_MODEL_TIMEOUT_MS", default=200.0)
# Per-model overrides, keyed by model version id or "product/name": {"fraud_score/gbdt": 50}.
INFERENCE_MODEL_TIMEOUTS_MS = env.json("INFERENCE_MODEL_TIMEOUTS_MS", default={})
# Bodies larger than this are refused from Content-Length, before anything is read or parsed.
INFERENCE_MAX_BODY_BYTES = env.int("INFERENCE_MAX_BODY_BYTES", default=64 * 1024)
INFERENCE_BATCH_MAX_ITEMS = env.int("INFERENCE_BATCH_MAX_ITEMS", default=256)
INFERENCE_BATCH_MAX_BODY_BYTES = env.int("INFERENCE_BATCH_MAX_BODY_BYTES", default=1024 * 1024)  # within API_MAX_BODY_BYTES
# The background refresher: how often it reads the configuration generation, and the slower
# unconditional reload (also the retry interval of a refused model).
INFERENCE_BACKGROUND_REFRESH = env.bool("INFERENCE_BACKGROUND_REFRESH", default=True)
INFERENCE_GENERATION_POLL_SECONDS = env.float("INFERENCE_GENERATION_POLL_SECONDS", default=0.5)
INFERENCE_RELOAD_SECONDS = env.float("INFERENCE_RELOAD_SECONDS", default=30.0)
# How long the first requests of a new process wait for the first load (once per process).
INFERENCE_STARTUP_WAIT_SECONDS = env.float("INFERENCE_STARTUP_WAIT_SECONDS", default=10.0)
# Shadow runs: worker threads and how many jobs may wait; beyond that a shadow run is skipped.
INFERENCE_SHADOW_WORKERS = env.int("INFERENCE_SHADOW_WORKERS", default=1)
# Interpreter settings of each server worker (`mlops.background.interpreter`): the collector's
# thresholds ("generation 0, 1, 2"; empty: CPython's) and the GIL switch interval (seconds; unset: 5 ms).
SERVER_GC_THRESHOLDS = tuple(env.list("SERVER_GC_THRESHOLDS", cast=int, default=[50_000, 20, 100]))
SERVER_SWITCH_INTERVAL = env.float("WEB_SWITCH_INTERVAL", default=None)
# Threads per hot-lane worker (`inference.lane.app`) for what must not run on its event loop:
# reading a recorded prediction (up to INFERENCE_READ_BACK_WAIT_SECONDS) and first-time waits.
INFERENCE_LANE_THREADS = env.int("INFERENCE_LANE_THREADS", default=4)
INFERENCE_SHADOW_QUEUE = env.int("INFERENCE_SHADOW_QUEUE", default=64)
# Micro-batching (`inference.microbatch`): concurrent single-row predictions of one model run as
# one session call of at most MAX_ROWS rows. MAX_WAIT_US: how long a batch waits for more rows (0:
# it takes only what is already queued). Only models whose one-row run and explanation take at
# least MIN_RUN_US (measured when loaded) are batched; MODELS names them ("product/name" or a model
# version id; "*": every model; empty: off). Defaults from bench/microbatch.py (bench/README.md).
INFERENCE_MICROBATCH_MAX_ROWS = env.int("INFERENCE_MICROBATCH_MAX_ROWS", default=32)
INFERENCE_MICROBATCH_MAX_WAIT_US = env.int("INFERENCE_MICROBATCH_MAX_WAIT_US", default=0)
INFERENCE_MICROBATCH_MIN_RUN_US = env.float("INFERENCE_MICROBATCH_MIN_RUN_US", default=50.0)
INFERENCE_MICROBATCH_MODELS = env.list("INFERENCE_MICROBATCH_MODELS", default=["*"])

# --- Rollout ---
# Canary ladder in percent: `canary_step` moves to the next rung above the current share.
CANARY_LADDER = env.list("CANARY_LADDER", cast=float, default=[10, 25, 50, 100])
# The rollout guard (audit/guard/) tests each active canary sequentially over all of its traffic since it started
# (an mSPRT per metric, valid however often it looks: audit/evidence/sequential.py) and stops it once a rate is shown
# beyond its limit. In the embedded default it runs as a thread of the serving process (one evaluator at a time,
# through a lock in the shared cache); in production run `manage.py rollout_guard` as its own process and turn the
# thread off.
ROLLOUT_GUARD_IN_PROCESS = env.bool("ROLLOUT_GUARD_IN_PROCESS", default=DEBUG)
ROLLOUT_GUARD_INTERVAL_SECONDS = env.float("ROLLOUT_GUARD_INTERVAL_SECONDS", default=10.0)
# A floor against start-up noise (the test needs none to stay valid): below this many canary requests (shadow
# runs, for shadow differences) a metric is not judged.
ROLLOUT_GUARD_MIN_REQUESTS = env.int("ROLLOUT_GUARD_MIN_REQUESTS", default=20)
# Share of canary attempts that failed over to production.
ROLLOUT_GUARD_MAX_ERROR_RATE = env.float("ROLLOUT_GUARD_MAX_ERROR_RATE", default=0.05)
# Latency: the canary's p95 above L = max(ratio x production p95, production p95 + min delta), tested as "more than
# 5% of canary answers slower than L" (sub-millisecond noise is not a breach).
ROLLOUT_GUARD_LATENCY_RATIO = env.float("ROLLOUT_GUARD_LATENCY_RATIO", default=1.3)
ROLLOUT_GUARD_LATENCY_MIN_DELTA_MS = env.float("ROLLOUT_GUARD_LATENCY_MIN_DELTA_MS", default=1.0)
# False-positive rate of the canary (blocked among its answers whose outcome was negative); the floor in negatives.
ROLLOUT_GUARD_MAX_FP_RATE = env.float("ROLLOUT_GUARD_MAX_FP_RATE", default=0.05)
ROLLOUT_GUARD_MIN_OUTCOMES = env.int("ROLLOUT_GUARD_MIN_OUTCOMES", default=20)
# Share of the canary model's shadow runs whose difference from production is significant.
ROLLOUT_GUARD_MAX_SIGNIFICANT_DIFF_RATE = env.float("ROLLOUT_GUARD_MAX_SIGNIFICANT_DIFF_RATE", default=0.2)
# Automatic promotion (opt-in per product: CanaryConfig.auto_promote). After this many canary requests and
# outcomes (negatives) at the current step, the guard moves the canary to the next rung of CANARY_LADDER (and
# finally promotes it) once every metric is shown non-inferior within its margin:
# error rate below ROLLOUT_PROMOTE_MAX_ERROR_RATE (production has no logged error rate, so the bound is absolute);
# fewer than 5% of canary answers slower than production's p95 x (1 + ROLLOUT_PROMOTE_LATENCY_MARGIN);
# canary FP rate at most production's + ROLLOUT_PROMOTE_FP_MARGIN (upper bound of the canary's confidence
# sequence against the lower bound of production's); significant shadow differences below
# ROLLOUT_PROMOTE_MAX_SIGNIFICANT_DIFF_RATE (when the canary model runs as a shadow).
ROLLOUT_PROMOTE_MIN_REQUESTS = env.int("ROLLOUT_PROMOTE_MIN_REQUESTS", default=500)
ROLLOUT_PROMOTE_MIN_OUTCOMES = env.int("ROLLOUT_PROMOTE_MIN_OUTCOMES", default=200)
ROLLOUT_PROMOTE_MAX_ERROR_RATE = env.float("ROLLOUT_PROMOTE_MAX_ERROR_RATE", default=0.02)
ROLLOUT_PROMOTE_LATENCY_MARGIN = env.float("ROLLOUT_PROMOTE_LATENCY_MARGIN", default=0.2)
ROLLOUT_PROMOTE_FP_MARGIN = env.float("ROLLOUT_PROMOTE_FP_MARGIN", default=0.02)
ROLLOUT_PROMOTE_MAX_SIGNIFICANT_DIFF_RATE = env.float("ROLLOUT_PROMOTE_MAX_SIGNIFICANT_DIFF_RATE", default=0.1)
# The rollout page's counters and chart cover this many minutes.
ROLLOUT_STATS_MINUTES = env.int("ROLLOUT_STATS_MINUTES", default=10)
# The admin's front page: one card per product over the last DASHBOARD_MINUTES, fetched again every
# DASHBOARD_REFRESH_SECONDS while the page is open.
DASHBOARD_MINUTES = env.int("DASHBOARD_MINUTES", default=60)
DASHBOARD_REFRESH_SECONDS = env.int("DASHBOARD_REFRESH_SECONDS", default=5)
# Each serving process reports what it serves after every rebuild and at least this often (the rollout page's workers).
SERVING_WORKER_REPORT_SECONDS = env.float("SERVING_WORKER_REPORT_SECONDS", default=10.0)
# The rollout page lists the processes that reported within this many seconds (keep it above the report interval).
SERVING_WORKER_STALE_SECONDS = env.int("SERVING_WORKER_STALE_SECONDS", default=30)
# Rows of processes silent for longer than this are deleted by the next report.
SERVING_WORKER_FORGET_SECONDS = env.int("SERVING_WORKER_FORGET_SECONDS", default=3600)

# --- Backtests (inference/backtests.py): a candidate scored on logged production traffic, off the serving path ---
BACKTEST_BATCH_SIZE = env.int("BACKTEST_BATCH_SIZE", default=2048)  # rows per session run
BACKTEST_DEFAULT_ROWS = env.int("BACKTEST_DEFAULT_ROWS", default=10_000)  # newest rows scored when neither last nor since is given
BACKTEST_MAX_ROWS = env.int("BACKTEST_MAX_ROWS", default=1_000_000)
BACKTEST_MAX_RUNNING = env.int("BACKTEST_MAX_RUNNING", default=1)  # concurrent background runs per web process; more wait queued
BACKTEST_LATENCY_SAMPLES = env.int("BACKTEST_LATENCY_SAMPLES", default=200)  # single-row runs timed for the latency figure
# Off by default: on, a candidate is validated only after a backtest that passes these thresholds.
BACKTEST_REQUIRED_FOR_VALIDATION = env.bool("BACKTEST_REQUIRED_FOR_VALIDATION", default=False)
BACKTEST_MIN_ROWS = env.int("BACKTEST_MIN_ROWS", default=1000)  # rows scored
BACKTEST_MIN_AGREEMENT = env.float("BACKTEST_MIN_AGREEMENT", default=0.9)  # share of decisions equal to production's
BACKTEST_MAX_FP_RATE_INCREASE = env.float("BACKTEST_MAX_FP_RATE_INCREASE", default=0.01)  # candidate FP rate - production's
BACKTEST_MIN_OUTCOMES = env.int("BACKTEST_MIN_OUTCOMES", default=0)  # labelled negatives required before the FP rates count
BACKTEST_MAX_AGE_DAYS = env.int("BACKTEST_MAX_AGE_DAYS", default=7)  # an older passing backtest no longer validates

# --- Evidence: the comparison page and GET /v1/audit/compare (audit/selectors/comparison.py) ---
# The difference of rates (absolute: 0.02 = 2 points) whose detection "needs N more outcomes" is computed for.
EVIDENCE_DETECTABLE_DIFFERENCE = env.float("EVIDENCE_DETECTABLE_DIFFERENCE", default=0.02)
# Segments compared per product: a logged feature binned by quantiles of production's values
# ({"feature": name, "bins": 2..20}) or fixed score bands ({"score_band": [0, ..., 1]}). JSON.
EVIDENCE_SEGMENTS = env.json(
    "EVIDENCE_SEGMENTS",
    default={DEMO_PRODUCT: [{"feature": "mean_radius", "bins": 4}, {"score_band": [0, 0.2, 0.5, 0.8, 1]}]},
)

# --- Drift (audit/drift/): per-feature PSI of the logged inputs against each model version's baseline ---
# Evaluated in the process that runs the rollout guard (its thread, or `manage.py rollout_guard`), never on a request.
DRIFT_ENABLED = env.bool("DRIFT_ENABLED", default=True)
DRIFT_INTERVAL_SECONDS = env.float("DRIFT_INTERVAL_SECONDS", default=60.0)  # one evaluation (a stored window) per interval
DRIFT_WINDOW_SECONDS = env.int("DRIFT_WINDOW_SECONDS", default=3600)  # the live window compared with the baseline
DRIFT_LAG_SECONDS = env.float("DRIFT_LAG_SECONDS", default=5.0)  # the window ends this long ago: the log writer's batches land
DRIFT_BINS = env.int("DRIFT_BINS", default=10)  # quantile bins of the baseline, plus an overflow bin on each side
DRIFT_BASELINE_PREDICTIONS = env.int("DRIFT_BASELINE_PREDICTIONS", default=1000)  # first N predictions, when nothing better
DRIFT_MIN_ROWS = env.int("DRIFT_MIN_ROWS", default=100)  # fewer live rows in the window: no PSI (insufficient data)
DRIFT_PSI_MODERATE = env.float("DRIFT_PSI_MODERATE", default=0.1)
DRIFT_PSI_SIGNIFICANT = env.float("DRIFT_PSI_SIGNIFICANT", default=0.25)
DRIFT_HISTORY_DAYS = env.int("DRIFT_HISTORY_DAYS", default=30)  # stored windows older than this are deleted by the job

# Prediction log writer (see audit/writer.py for the policies these tune).
AUDIT_BATCH_SIZE = env.int("AUDIT_BATCH_SIZE", default=500)
AUDIT_FLUSH_INTERVAL = env.float("AUDIT_FLUSH_INTERVAL", default=0.2)  # seconds a batch may wait to fill
AUDIT_QUEUE_MAX = env.int("AUDIT_QUEUE_MAX", default=100_000)
AUDIT_RECENT_SIZE = env.int("AUDIT_RECENT_SIZE", default=10_000)  # records kept for lookup() per process
# "copy" (PostgreSQL COPY, measured ~4x bulk_create) or "bulk_create"; empty picks COPY on PostgreSQL.
AUDIT_WRITE_METHOD = env.str("AUDIT_WRITE_METHOD", default="")
AUDIT_SPILL_DIR = env.str("AUDIT_SPILL_DIR", default=str(VAR_DIR / "audit-spill"))
AUDIT_SPILL_MAX_BYTES = env.int("AUDIT_SPILL_MAX_BYTES", default=50 * 1024 * 1024)
AUDIT_RETRY_INTERVAL = env.float("AUDIT_RETRY_INTERVAL", default=2.0)  # seconds between attempts while the DB is down
AUDIT_REPLAY_INTERVAL = env.float("AUDIT_REPLAY_INTERVAL", default=5.0)  # seconds between looks for spill files
AUDIT_OVERFLOW_LOCK_TIMEOUT = env.float("AUDIT_OVERFLOW_LOCK_TIMEOUT", default=0.05)
AUDIT_SHUTDOWN_TIMEOUT = env.float("AUDIT_SHUTDOWN_TIMEOUT", default=10.0)  # keep below the server's graceful timeout
AUDIT_SIGNAL_HANDLERS = env.bool("AUDIT_SIGNAL_HANDLERS", default=True)
# PII: feature/payload keys dropped, or replaced by HMAC-SHA256 (keyed by AUDIT_REDACT_HASH_KEY), before
# a record is kept, written or spilled.
AUDIT_REDACT_DROP = env.list("AUDIT_REDACT_DROP", default=[])
AUDIT_REDACT_HASH = env.list("AUDIT_REDACT_HASH", default=[])
AUDIT_REDACT_HASH_KEY = env.str("AUDIT_REDACT_HASH_KEY", default=SECRET_KEY)
# Publish written predictions to the channel group "predictions.<product>" for the live pages.
AUDIT_PUBLISH_LIVE = env.bool("AUDIT_PUBLISH_LIVE", default=True)
# Rows fetched per database round trip by the exports (`manage.py audit_export`, the admin's download).
AUDIT_EXPORT_CHUNK = env.int("AUDIT_EXPORT_CHUNK", default=2_000)
# PostgreSQL: the log is partitioned by created_at (audit/partitions.py), each partition this many
# days wide, created this many days ahead by the guard process and `manage.py audit_partitions`.
AUDIT_PARTITION_DAYS = env.int("AUDIT_PARTITION_DAYS", default=1)
AUDIT_PARTITIONS_AHEAD = env.int("AUDIT_PARTITIONS_AHEAD", default=7)

# --- Security ---------------------------------------------------------------------------------
# API authentication (mlops.security.authentication), roles (mlops.security.roles), rate limits (mlops.security.ratelimits).
INSTALLED_APPS += ["django_ratelimit"]

# JWT for external clients: HS256 with JWT_SECRET, or RS256/ES256 with JWT_PUBLIC_KEY (PEM).
# Issuer and audience are always checked; without them (or a key) JWTs are refused.
JWT_ALGORITHM = env.str("JWT_ALGORITHM", default="HS256")
JWT_SECRET = env.str("JWT_SECRET", default="")
JWT_PUBLIC_KEY = env.str("JWT_PUBLIC_KEY", default="", multiline=True)
JWT_ISSUER = env.str("JWT_ISSUER", default="")
JWT_AUDIENCE = env.str("JWT_AUDIENCE", default="")
JWT_LEEWAY = env.int("JWT_LEEWAY", default=30)  # seconds of clock skew tolerated on exp/nbf/iat
JWT_ROLES_CLAIM = env.str("JWT_ROLES_CLAIM", default="roles")
# The issuer's role names -> ours ("their-name=inference_client,..."); our own names always map.
JWT_ROLE_MAP = env.dict("JWT_ROLE_MAP", default={})

# Development only: requests without credentials get every capability. Honoured only when DEBUG
# is on; a system check (mlops.security.W001) warns loudly whenever it is active.
API_AUTH_DEV_BYPASS = env.bool("API_AUTH_DEV_BYPASS", default=False)
# The OpenAPI schema and docs pages without credentials (off: they need any valid credential).
API_DOCS_PUBLIC = env.bool("API_DOCS_PUBLIC", default=False)
# Request bodies above this are refused (413) before they are read or parsed.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
# ...except an ONNX file registered over the API (POST /v1/models), refused above this size.
MODEL_UPLOAD_MAX_BYTES = env.int("MODEL_UPLOAD_MAX_BYTES", default=256 * 1024 * 1024)
# Paths under which Django's own 404/500 pages answer in the API's JSON error format.
API_PATH_PREFIXES = ("/v1/",)

# Rate limits (django-ratelimit rate syntax, "N/period"; an empty value disables that window).
# "30/min with a burst of 5" = two fixed windows that must both allow a request: 30 per minute
# and at most 5 in any one second. Each process decides from its own counts and reconciles them
# with the shared cache (Redis with REDIS_URL) in the background; how far several processes can
# overshoot a limit is worked out in mlops.security.ratelimits.
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_PREDICT = env.str("RATELIMIT_PREDICT", default="30/m")
RATELIMIT_PREDICT_BURST = env.str("RATELIMIT_PREDICT_BURST", default="5/s")
RATELIMIT_AUDIT = env.str("RATELIMIT_AUDIT", default="120/m")
# At most this many audit reads in any one second (seed 000: 120 a minute with a burst of 15).
RATELIMIT_AUDIT_BURST = env.str("RATELIMIT_AUDIT_BURST", default="15/s")
RATELIMIT_ADMIN = env.str("RATELIMIT_ADMIN", default="20/m")
# Seconds between two reconciliations (one Redis round trip each, per process): the lag of one
# process's view of the others' requests, hence the overshoot, grows with it.
RATELIMIT_SYNC_INTERVAL = env.float("RATELIMIT_SYNC_INTERVAL", default=0.1)
RATELIMIT_SYNC_IN_BACKGROUND = True  # tests turn the thread off and reconcile by hand
# Cache down: each process serves on its own counts (counted in mlops_ratelimit_fail_open_total)
# and tries the cache again after this many seconds.
RATELIMIT_FAIL_OPEN = True
RATELIMIT_FAIL_OPEN_PAUSE = env.float("RATELIMIT_FAIL_OPEN_PAUSE", default=5.0)
RATELIMIT_USE_CACHE = "default"  # the cache alias the counters live in (django-ratelimit reads it too)
# Behind a reverse proxy: the header that carries the client IP (e.g. "X-Forwarded-For"); its
# right-most entry is used. Empty: REMOTE_ADDR (never trust the header without a proxy that sets it).
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="")
RATELIMIT_IP_META_KEY = "mlops.security.ratelimits.client_ip"  # for any @ratelimit(key="ip") too
if not REDIS_URL:
    # The embedded default is one process with a local-memory cache: its counters are per
    # process, which is exactly right for one process. django-ratelimit's check refuses
    # local memory because it is not shared between processes; production sets REDIS_URL.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# --- Operations -------------------------------------------------------------------------------
# OpenAPI (mlops.api.openapi): the schema at /api/schema/, Swagger UI at /api/docs/ from the sidecar
# package (no CDN); access follows API_DOCS_PUBLIC (Security, above).
INSTALLED_APPS += ["drf_spectacular_sidecar"]
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "mlops.api.openapi.AutoSchema"  # common error responses, auth
SPECTACULAR_SETTINGS.update(
    {
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
        "COMPONENT_SPLIT_REQUEST": True,  # request and response shapes differ (read-only fields)
        "SCHEMA_PATH_PREFIX": r"/v1/",
        # What the `slug` converter matches (else a path parameter is any string, and one that is
        # no slug answers the catch-all 404 rather than reaching the endpoint).
        "PATH_CONVERTER_OVERRIDES": {"slug": {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$"}},
        # The registry's products and their features in POST /v1/infer's body (inference.openapi), then
        # the links views declare (mlops.api.openapi.links); after drf-spectacular's own enum hook.
        "POSTPROCESSING_HOOKS": [
            "drf_spectacular.hooks.postprocess_schema_enums",
            "inference.openapi.postprocess_infer_requests",
            "mlops.api.openapi.postprocess_links",
        ],
        # One name per choice set that several components share (else drf-spectacular warns and makes up names).
        "ENUM_NAME_OVERRIDES": {
            "ModelRoleEnum": "mlops.choices.ModelRole",
            "AnsweringRoleEnum": ["production", "canary"],
            "DecisionEnum": "mlops.choices.Decision",
            "ModelStatusEnum": "mlops.choices.ModelStatus",
            "BacktestStatusEnum": "audit.models.BacktestStatus",
        },
    }
)

# Resilience off the request path (mlops/resilience.py): attempts per operation with exponential
# backoff and jitter starting at *_RETRY_INITIAL_SECONDS, capped at *_RETRY_MAX_SECONDS; a
# dependency's breaker opens after *_BREAKER_FAIL_MAX failed operations in a row and stays open
# (calls fail at once) for *_BREAKER_RESET_SECONDS before one trial call. State: mlops_circuit_state.
# The model store, per S3 endpoint (syncs, model loads):
S3_RETRY_ATTEMPTS = env.int("S3_RETRY_ATTEMPTS", default=3)
S3_RETRY_INITIAL_SECONDS = env.float("S3_RETRY_INITIAL_SECONDS", default=0.2)
S3_RETRY_MAX_SECONDS = env.float("S3_RETRY_MAX_SECONDS", default=5.0)
S3_BREAKER_FAIL_MAX = env.int("S3_BREAKER_FAIL_MAX", default=5)
S3_BREAKER_RESET_SECONDS = env.float("S3_BREAKER_RESET_SECONDS", default=30.0)
# The database, for background work (serving snapshot refresh, API key reloads, rollout guard,
# dual-model configuration and records); the prediction log writer spills instead (AUDIT_*).
DB_RETRY_ATTEMPTS = env.int("DB_RETRY_ATTEMPTS", default=3)
DB_RETRY_INITIAL_SECONDS = env.float("DB_RETRY_INITIAL_SECONDS", default=0.1)
DB_RETRY_MAX_SECONDS = env.float("DB_RETRY_MAX_SECONDS", default=2.0)
DB_BREAKER_FAIL_MAX = env.int("DB_BREAKER_FAIL_MAX", default=3)
DB_BREAKER_RESET_SECONDS = env.float("DB_BREAKER_RESET_SECONDS", default=10.0)

# Tracing (mlops/tracing.py): OpenTelemetry spans, a no-op unless an exporter is configured.
# TRACING_EXPORTER: "" (off), "otlp" (OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT; needs the packages of
# deploy/requirements-tracing.txt) or "console" (stdout, for debugging). Setting only
# OTEL_EXPORTER_OTLP_ENDPOINT implies "otlp". Standard OTEL_* variables (headers, timeouts) apply.
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
TRACING_EXPORTER = env.str("TRACING_EXPORTER", default="otlp" if OTEL_EXPORTER_OTLP_ENDPOINT else "")
TRACING_SAMPLE_RATIO = env.float("TRACING_SAMPLE_RATIO", default=1.0)  # share of root traces kept

# --- Streams ---
# Server-Sent Events served by the `stream` process (daphne + Channels): inference/streams/.
# POST /stream/v1/infer: timeouts come from each product's DualModelConfig (admin); these bound
# what a client waits for a run that ignores its cancellation, and the idempotency memory.
STREAM_CANCEL_GRACE_SECONDS = env.float("STREAM_CANCEL_GRACE_SECONDS", default=5.0)
STREAM_RECENT_RUNS = env.int("STREAM_RECENT_RUNS", default=2_000)  # run ids remembered per process before the DB is asked
# DualRunRecord persistence: attempts (exponential backoff with jitter) before a record is dropped and counted.
STREAM_RECORD_ATTEMPTS = env.int("STREAM_RECORD_ATTEMPTS", default=6)
STREAM_RECORD_MAX_WAIT_SECONDS = env.float("STREAM_RECORD_MAX_WAIT_SECONDS", default=5.0)
# How long a stopping process waits for the records still queued (within daphne's stop grace).
STREAM_RECORD_SHUTDOWN_TIMEOUT = env.float("STREAM_RECORD_SHUTDOWN_TIMEOUT", default=5.0)
# /stream/live/<product>/: events per second one subscriber gets before the stream samples (and says so),
# heartbeat comments for proxies, and how many missed predictions a reconnect (Last-Event-ID) replays.
LIVE_MAX_EVENTS_PER_SECOND = env.int("LIVE_MAX_EVENTS_PER_SECOND", default=20)
LIVE_HEARTBEAT_SECONDS = env.float("LIVE_HEARTBEAT_SECONDS", default=15.0)
LIVE_REPLAY_MAX = env.int("LIVE_REPLAY_MAX", default=200)
# How often an open live page checks that its staff session is still valid (logout, password
# change, deactivation end the stream within this many seconds).
LIVE_SESSION_CHECK_SECONDS = env.float("LIVE_SESSION_CHECK_SECONDS", default=15.0)
