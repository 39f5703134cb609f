"""Test settings: the real PostgreSQL and Redis when they are reachable, the embedded default otherwise.

CI always has both; it sets ``REQUIRE_SERVICES=1`` so that a missing service fails the run
instead of silently testing against SQLite.
"""

import os
import socket
import tempfile

from tests.prerequisites import services_required


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_require = services_required()
if "DATABASE_URL" not in os.environ:
    if _reachable("127.0.0.1", 5432):
        os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/mlops"
    elif _require:
        raise RuntimeError("REQUIRE_SERVICES=1 but PostgreSQL is not reachable on 127.0.0.1:5432")
if "REDIS_URL" not in os.environ:
    if _reachable("127.0.0.1", 6379):
        os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    elif _require:
        raise RuntimeError("REQUIRE_SERVICES=1 but Redis is not reachable on 127.0.0.1:6379")

# Each test session gets its own model store, cache and var folders: nothing lands in the checkout's var/.
_scratch = tempfile.mkdtemp(prefix="mlops-tests-")
os.environ.setdefault("VAR_DIR", f"{_scratch}/var")
os.environ.setdefault("MODEL_STORE_URL", f"file://{_scratch}/store")
os.environ.setdefault("MODEL_CACHE_DIR", f"{_scratch}/cache")
os.environ.setdefault("CACHE_KEY_PREFIX", f"mlops-test-{os.getpid()}")
os.environ.setdefault("CHANNEL_PREFIX", f"mlops-test-{os.getpid()}")
# How long a thread waits for a pooled connection: short, so that a database outage made by a
# test (tests/faults.py) fails background work in seconds rather than the production default's 10.
os.environ.setdefault("DB_POOL_TIMEOUT", "2")

from mlops.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation in tests

# Several test sessions may share one PostgreSQL server (parallel runs on one machine).
DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_mlops_{os.getpid()}"  # noqa: F405
ROLLOUT_GUARD_IN_PROCESS = False  # the test process is no server (tests that import mlops.asgi must not start it)
# Tests that send `serving_started` to start the guard's thread must not start the drift thread beside it
# (it would go on reading the database for the rest of the session); tests/drift turns it on where it is the subject.
DRIFT_ENABLED = False
