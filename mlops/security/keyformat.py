"""The format of API keys, shared by the services that make them and the code that checks them.

A key is ``mlk_<prefix>.<secret>``: ``mlk_`` marks it as ours (secret scanners; a Bearer token
that is not a JWT), the prefix finds the row, and only the SHA-256 of the secret is stored.
"""

import hashlib

KEY_PREFIX = "mlk_"


def split_key(key: str) -> tuple[str, str] | None:
    """``mlk_<prefix>.<secret>`` -> (prefix, secret), or None when it is not one of our keys."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, dot, secret = key[len(KEY_PREFIX) :].partition(".")
    if not dot or not prefix or not secret:
        return None
    return prefix, secret


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def format_key(prefix: str, secret: str) -> str:
    return f"{KEY_PREFIX}{prefix}.{secret}"
