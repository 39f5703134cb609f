"""System checks of the API's security settings (``manage.py check``; runserver runs them too)."""

import re

from django.conf import settings
from django.core import checks

_RATE = re.compile(r"^\d+/\d*[smhd]$")
_RATE_SETTINGS = ("RATELIMIT_PREDICT", "RATELIMIT_PREDICT_BURST", "RATELIMIT_AUDIT", "RATELIMIT_ADMIN")


@checks.register(checks.Tags.security)
def check_dev_bypass(app_configs, **kwargs):
    if not settings.API_AUTH_DEV_BYPASS:
        return []
    if settings.DEBUG:
        return [
            checks.Warning(
                "API AUTHENTICATION IS BYPASSED: every request without credentials acts with every capability "
                "(API_AUTH_DEV_BYPASS=1 with DEBUG on).",
                hint="Only for local development. Unset API_AUTH_DEV_BYPASS before exposing this process to anyone.",
                id="mlops.security.W001",
            )
        ]
    return [
        checks.Warning(
            "API_AUTH_DEV_BYPASS is set but ignored because DEBUG is off.",
            hint="Remove API_AUTH_DEV_BYPASS from this environment.",
            id="mlops.security.W002",
        )
    ]


@checks.register(checks.Tags.security)
def check_rate_limits(app_configs, **kwargs):
    errors = []
    for name in _RATE_SETTINGS:
        value = getattr(settings, name)
        if value and not _RATE.match(value):
            errors.append(
                checks.Error(
                    f"{name}={value!r} is not a django-ratelimit rate.",
                    hint='Write it as "<count>/<period>", e.g. "30/m", "5/s", "1000/h" or "100/5m" (empty disables).',
                    id="mlops.security.E001",
                )
            )
    return errors


@checks.register(checks.Tags.security)
def check_jwt(app_configs, **kwargs):
    errors = []
    algorithm = settings.JWT_ALGORITHM
    if algorithm.startswith("HS") and settings.JWT_SECRET and len(settings.JWT_SECRET) < 32:
        errors.append(checks.Warning("JWT_SECRET is shorter than 32 characters.", id="mlops.security.W003"))
    if algorithm in ("none", "") or not re.match(r"^(HS|RS|PS|ES)(256|384|512)$|^EdDSA$", algorithm):
        errors.append(checks.Error(f"JWT_ALGORITHM={algorithm!r} is not supported.", id="mlops.security.E002"))
    return errors


@checks.register(checks.Tags.urls, checks.Tags.security)
def check_api_permissions(app_configs, **kwargs):
    """Every endpoint must say which capability it needs (an undeclared one answers nobody)."""
    from mlops.api.base import UNSET, iter_api_endpoints

    errors = []
    for route, view_class in iter_api_endpoints():
        if getattr(view_class, "api_permission", UNSET) is UNSET:
            errors.append(
                checks.Warning(
                    f"{view_class.__module__}.{view_class.__qualname__} ({route}) declares no api_permission and refuses every caller.",
                    hint="Set api_permission to an mlops.choices.ApiCapability, or None for a public endpoint.",
                    id="mlops.security.W004",
                )
            )
    return errors
