"""Security test helpers: keys, tokens and staff sessions per role, and a clean auth state per test."""

import time

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from mlops import services
from mlops.security.authentication import api_keys
from tests.conftest import JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET


@pytest.fixture(autouse=True)
def security_settings(credential_settings):
    """Probe URLs, and `credential_settings` (known JWT settings, rate limits off unless a test
    turns them on and then reconciled with the store only when it says so: ``limiter.sync()``)."""
    credential_settings.ROOT_URLCONF = "tests.probe_urls"
    return credential_settings


def create_key(role: str, client: str = "client-a", **kwargs) -> str:
    """A new API key (in the test's transaction; the in-process key cache is told to reload)."""
    _, plaintext = services.api_key_create(client=client, role=role, **kwargs)
    api_keys.invalidate()
    return plaintext


def make_jwt(roles=("inference_client",), *, sub="ext-client", exp_in=300, key=JWT_SECRET, algorithm="HS256", **claims) -> str:
    now = int(time.time())
    payload = {"sub": sub, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now, "exp": now + exp_in}
    if roles is not None:
        payload["roles"] = roles if isinstance(roles, str) else list(roles)
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=algorithm)


def bearer(credential: str) -> dict:
    return {"Authorization": f"Bearer {credential}"}


def staff_client(role: str | None, username: str | None = None) -> Client:
    """A client signed in as a staff member who belongs to the role's group."""
    user = get_user_model().objects.create_user(username or f"staff-{role}", password="pw", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client
