"""API keys: create (the plaintext is returned once) and revoke.

Serving workers hold the active keys in process (``mlops.security.authentication``) and reload them
when the configuration generation changes, so every write here bumps the generation after
its commit: a revoked key stops working on every worker within about a second.
"""

import re
import secrets
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlops.background import config_generation
from mlops.models import ApiKey
from mlops.security.keyformat import format_key, secret_digest
from mlops.security.roles import Role

_CLIENT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,99}$")

User = AbstractBaseUser | None


class ApiKeyError(Exception):
    """An API key operation that cannot be done as asked (message is for people)."""


@transaction.atomic
def api_key_create(
    *,
    client: str,
    role: str,
    expires_at: datetime | None = None,
    expires_in_days: int | None = None,
    label: str = "",
    created_by: User = None,
) -> tuple[ApiKey, str]:
    """Create a key for ``client`` with ``role``; returns the row and the plaintext key (shown once)."""
    client = (client or "").strip()
    if not _CLIENT_PATTERN.match(client):
        raise ApiKeyError("client must be 1-100 characters: letters, digits, space, '.', '_', ':', '@' or '-'")
    if role not in Role.values:
        raise ApiKeyError(f"role {role!r} is not one of: {', '.join(Role.values)}")
    if expires_in_days is not None:
        if expires_at is not None:
            raise ApiKeyError("give either an expiry date or a number of days, not both")
        if expires_in_days <= 0:
            raise ApiKeyError("the number of days until expiry must be positive")
        expires_at = timezone.now() + timedelta(days=expires_in_days)
    if expires_at is not None and expires_at <= timezone.now():
        raise ApiKeyError("the expiry must be in the future")
    secret = secrets.token_urlsafe(32)
    for _ in range(5):  # 40-bit prefixes: a collision is very unlikely, but a retry is cheap
        prefix = secrets.token_hex(5)
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    client=client,
                    role=role,
                    label=(label or "").strip()[:200],
                    prefix=prefix,
                    secret_sha256=secret_digest(secret).hex(),
                    expires_at=expires_at,
                    created_by=created_by,
                )
            break
        except IntegrityError:
            continue
    else:  # pragma: no cover - five collisions in a row
        raise ApiKeyError("could not allocate a unique key prefix; try again")
    config_generation.bump_on_commit()
    return api_key, format_key(prefix, secret)


@transaction.atomic
def api_key_revoke(*, api_key_id: int, user: User = None) -> ApiKey:
    """Revoke a key (idempotent: revoking a revoked key keeps the first revocation)."""
    updated = ApiKey.objects.filter(pk=api_key_id, revoked_at__isnull=True).update(revoked_at=timezone.now(), revoked_by=user)
    api_key = ApiKey.objects.filter(pk=api_key_id).first()
    if api_key is None:
        raise ApiKeyError(f"API key {api_key_id} does not exist")
    if updated:
        config_generation.bump_on_commit()
    return api_key
