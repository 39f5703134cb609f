"""The audit app's settings with their defaults (``mlops/settings.py`` reads them from the environment)."""

from django.conf import settings

DEFAULTS = {
    "AUDIT_BATCH_SIZE": 500,
    "AUDIT_FLUSH_INTERVAL": 0.2,
    "AUDIT_QUEUE_MAX": 100_000,
    "AUDIT_RECENT_SIZE": 10_000,
    "AUDIT_WRITE_METHOD": "",
    "AUDIT_SPILL_DIR": None,  # VAR_DIR / "audit-spill"
    "AUDIT_SPILL_MAX_BYTES": 50 * 1024 * 1024,
    "AUDIT_RETRY_INTERVAL": 2.0,
    "AUDIT_REPLAY_INTERVAL": 5.0,
    "AUDIT_OVERFLOW_LOCK_TIMEOUT": 0.05,
    "AUDIT_SHUTDOWN_TIMEOUT": 10.0,
    "AUDIT_SIGNAL_HANDLERS": True,
    "AUDIT_REDACT_DROP": [],
    "AUDIT_REDACT_HASH": [],
    "AUDIT_REDACT_HASH_KEY": None,  # SECRET_KEY
    "AUDIT_PUBLISH_LIVE": True,
    "AUDIT_EXPORT_CHUNK": 2_000,
}


def setting(name: str):
    value = getattr(settings, name, DEFAULTS[name])
    if value is None and name == "AUDIT_SPILL_DIR":
        value = str(getattr(settings, "VAR_DIR", settings.BASE_DIR / "var") / "audit-spill")
    if value is None and name == "AUDIT_REDACT_HASH_KEY":
        value = settings.SECRET_KEY
    return value
