"""JWT callers: signature, issuer, audience, expiry and roles are all checked."""

import hashlib
import hmac
import json
import time
from base64 import urlsafe_b64encode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client

from mlops.security import authentication

from .conftest import JWT_AUDIENCE, JWT_ISSUER, bearer, make_jwt

pytestmark = pytest.mark.django_db
PROBE = "/v1/_probe/predict"


def get(token: str):
    return Client().get(PROBE, headers=bearer(token))


def refused(response, status: int, code: str):
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in response.content.decode()
    return True


def test_a_valid_token_with_a_granting_role_is_accepted():
    response = get(make_jwt(["inference_client"], sub="partner-7"))
    assert response.status_code == 200
    assert response.json() == {"ok": True, "kind": "jwt", "name": "partner-7"}


def test_a_bad_signature_is_refused():
    assert refused(get(make_jwt(key="another-secret-of-sufficient-length-0123456789")), 401, "invalid_token")
    token = make_jwt()
    assert refused(get(token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")), 401, "invalid_token")


def test_a_wrong_audience_is_refused():
    assert refused(get(make_jwt(aud="someone-else")), 401, "invalid_token")


def test_a_wrong_issuer_is_refused():
    assert refused(get(make_jwt(iss="https://evil.example/")), 401, "invalid_token")


def test_an_expired_token_is_refused():
    assert refused(get(make_jwt(exp_in=-120)), 401, "token_expired")


def test_a_token_without_exp_or_sub_is_refused():
    assert refused(get(make_jwt(exp=None)), 401, "invalid_token")
    assert refused(get(make_jwt(sub=None)), 401, "invalid_token")


def test_a_token_without_a_role_is_forbidden():
    response = get(make_jwt(roles=None))
    assert refused(response, 403, "permission_denied")
    assert "no role" in response.json()["error"]["message"]


def test_unknown_roles_grant_nothing_and_a_role_without_the_capability_is_forbidden():
    assert refused(get(make_jwt(["superadmin"])), 403, "permission_denied")
    assert refused(get(make_jwt(["viewer"])), 403, "permission_denied")


def test_roles_may_come_as_a_space_separated_string_and_be_mapped(settings):
    assert get(make_jwt("viewer inference_client")).status_code == 200
    settings.JWT_ROLE_MAP = {"fraud-scorer": "inference_client"}
    assert get(make_jwt(["fraud-scorer"], sub="mapped")).status_code == 200


def test_the_none_algorithm_is_refused():
    token = jwt.encode(
        {"sub": "x", "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "exp": int(time.time()) + 60, "roles": ["internal_service"]},
        None,
        algorithm="none",
    )
    assert refused(get(token), 401, "invalid_token")


def test_a_remembered_token_is_still_refused_once_expired(settings, monkeypatch):
    settings.JWT_LEEWAY = 0
    token = make_jwt(exp_in=1)
    assert get(token).status_code == 200  # verified, and remembered until it expires
    later = time.time() + 1.1
    monkeypatch.setattr(authentication, "clock", lambda: later)
    assert refused(get(token), 401, "token_expired")


def test_jwts_are_refused_when_not_configured(settings):
    settings.JWT_SECRET = ""
    assert refused(get(make_jwt()), 401, "invalid_token")


@pytest.fixture
def rsa_keys(settings):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    settings.JWT_ALGORITHM = "RS256"
    settings.JWT_PUBLIC_KEY = public_pem
    return private, public_pem


def test_rs256_tokens_are_checked_with_the_public_key(rsa_keys):
    private, _ = rsa_keys
    assert get(make_jwt(key=private, algorithm="RS256")).status_code == 200
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(get(make_jwt(key=other, algorithm="RS256")), 401, "invalid_token")


def test_an_hs256_token_signed_with_the_public_key_is_refused(rsa_keys):
    # The classic algorithm-confusion attack: the verifier never takes the algorithm from the token.
    _, public_pem = rsa_keys
    claims = {"sub": "x", "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "exp": int(time.time()) + 60, "roles": ["internal_service"]}
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert refused(get(f"{signing_input}.{b64(signature)}"), 401, "invalid_token")


def b64(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode()
