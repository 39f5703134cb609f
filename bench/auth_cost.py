"""Cost of authentication + permission + rate limiting per API request, in process (µs).

    .venv/bin/python bench/auth_cost.py                                   # local-memory cache
    REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python bench/auth_cost.py  # the shared cache

Runs DRF's ``initialize_request`` + ``initial`` (body-size check, authentication, rate limit,
permission) of an endpoint that needs ``predict``, for each kind of caller, and subtracts the
same steps on an endpoint with no authentication, permission or limit. Uses a throwaway
in-memory SQLite database unless DATABASE_URL is set (which must then be migrated).
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")
os.environ.setdefault("DATABASE_URL", "sqlite://:memory:")
os.environ.setdefault("CACHE_KEY_PREFIX", f"bench-auth-{os.getpid()}")

import django

django.setup()

import jwt  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from rest_framework.permissions import AllowAny  # noqa: E402

from mlops import services  # noqa: E402
from mlops.api.base import BaseAPIView  # noqa: E402
from mlops.choices import ApiCapability  # noqa: E402
from mlops.security import ratelimits  # noqa: E402
from mlops.security.authentication import api_keys, verified_tokens, verify_api_key, verify_jwt  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3000"))


class Predict(BaseAPIView):
    api_permission = ApiCapability.PREDICT


class Bare(BaseAPIView):
    api_permission = None
    authentication_classes: list = []
    permission_classes = [AllowAny]


class Cost(tuple):
    """(wall µs, CPU µs) per call; CPU time leaves out waiting for Redis and other processes."""

    def __sub__(self, other):
        return Cost((self[0] - other[0], self[1] - other[1]))


def per_call_us(function, rounds: int = ROUNDS) -> Cost:
    """Median of 5 runs of ``rounds`` calls: wall-clock and this process's CPU, in µs per call."""
    for _ in range(min(rounds, 200)):
        function()
    walls, cpus = [], []
    for _ in range(5):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            function()
        walls.append((time.perf_counter() - wall) / rounds * 1e6)
        cpus.append((time.process_time() - cpu) / rounds * 1e6)
    return Cost((statistics.median(walls), statistics.median(cpus)))


def pipeline(view_class, headers: dict):
    factory = RequestFactory()
    view = view_class()
    view.args, view.kwargs, view.headers = (), {}, {}

    def run():
        request = factory.post("/v1/infer", data=b"{}", content_type="application/json", headers=headers)
        drf_request = view.initialize_request(request)
        view.request = drf_request
        view.initial(drf_request)
        # response headers as a limited response would get them
        usage = getattr(drf_request, "_ratelimit_usage", None)
        return usage

    return run


def main() -> None:
    if connection.vendor == "sqlite" and settings.DATABASES["default"]["NAME"] in (":memory:", ""):
        call_command("migrate", verbosity=0)
    settings.JWT_SECRET = "bench-secret-0123456789-0123456789-0123456789"  # noqa: S105 - a throwaway
    settings.JWT_ISSUER, settings.JWT_AUDIENCE = "https://idp.bench/", "mlops"
    # Limits high enough never to refuse during the run: every call still counts.
    settings.RATELIMIT_PREDICT, settings.RATELIMIT_PREDICT_BURST = "100000000/h", "100000000/m"
    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]

    with transaction.atomic():
        _, key = services.api_key_create(client="bench", role="inference_client")
        api_keys.invalidate()
        now = int(time.time())
        claims = {"sub": "bench", "iss": settings.JWT_ISSUER, "aud": settings.JWT_AUDIENCE, "exp": now + 3600}
        claims["roles"] = ["inference_client"]
        token = jwt.encode(claims, settings.JWT_SECRET, algorithm="HS256")

        results = {}
        results["verify API key (in-process key table)"] = per_call_us(lambda: verify_api_key(key), rounds=50_000)
        results["verify JWT HS256, remembered"] = per_call_us(lambda: verify_jwt(token), rounds=50_000)

        def fresh_jwt():
            verified_tokens.clear()
            verify_jwt(token)

        results["verify JWT HS256, first sight"] = per_call_us(fresh_jwt, rounds=5_000)

        principal = verify_api_key(key)
        settings.RATELIMIT_ENABLE = True
        # In process memory; the background sync (with Redis) runs beside it, as in a server.
        results[f"rate limit check, 2 windows ({cache_backend})"] = per_call_us(
            lambda: ratelimits.check_caller(capability=ApiCapability.PREDICT, principal=principal, ip="127.0.0.1")
        )

        client_of = getattr(getattr(cache, "client", None), "get_client", None)
        if client_of is not None:  # what a shared count per request would cost at the least
            redis = client_of(write=True)
            results["Redis round trip (PING), for scale"] = per_call_us(redis.ping)

        bare = per_call_us(pipeline(Bare, {}))
        results["DRF request + initial(), no auth (baseline)"] = bare
        for label, headers in (("API key", {"Authorization": f"Bearer {key}"}), ("JWT", {"Authorization": f"Bearer {token}"})):
            settings.RATELIMIT_ENABLE = False
            auth_only = per_call_us(pipeline(Predict, headers)) - bare
            settings.RATELIMIT_ENABLE = True
            full = per_call_us(pipeline(Predict, headers)) - bare
            results[f"{label}: authentication + permission (over baseline)"] = auth_only
            results[f"{label}: authentication + permission + rate limit (over baseline)"] = full
        transaction.set_rollback(True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cache: {settings.CACHES['default']['BACKEND']}  rounds: {ROUNDS}  python {sys.version.split()[0]}  load: {load:.1f}")
    width = max(len(label) for label in results)
    print(f"{'':<{width}}  {'wall µs':>9}  {'CPU µs':>8}")
    for label, (wall, cpu) in results.items():
        print(f"{label:<{width}}  {wall:9.1f}  {cpu:8.1f}")


if __name__ == "__main__":
    main()
