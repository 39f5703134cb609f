"""A real daphne or gunicorn process (`mlops.asgi` / `mlops.wsgi`) on a free loopback port, against the test database."""

import contextlib

from tests import servers

ENV = {
    "DEBUG": "1",
    "RATELIMIT_ENABLE": "0",
    "INFERENCE_GENERATION_POLL_SECONDS": "0.2",
    "ROLLOUT_GUARD_IN_PROCESS": "0",
    "AUDIT_SIGNAL_HANDLERS": "0",
}


def daphne(**extra):
    """Yields the base URL of a daphne serving the project; waits until it answers /healthz."""
    return serving("daphne", [], extra)


def gunicorn(**extra):
    """Yields the base URL of the `web` process (gunicorn, one worker, mlops.wsgi)."""
    return serving("gunicorn", ["--workers", "1", "--log-level", "warning"], extra)


@contextlib.contextmanager
def serving(kind: str, args: list[str], extra: dict):
    with servers.start(kind, env={**ENV, **extra}, args=args, ready_path="/healthz", ready_within=30) as server:
        yield server.url
