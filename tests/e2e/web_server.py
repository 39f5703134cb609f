"""Real server processes for the operations tests."""

import subprocess
from pathlib import Path

from tests import servers


def start_web(tmp_path: Path, port: int, redis_url: str, **extra_env: str) -> subprocess.Popen:
    """A real gunicorn `web` process (repository gunicorn.conf.py, DEBUG off) on this test's database."""
    env = {
        **servers.PRODUCTION,
        "REDIS_URL": redis_url,
        "RATELIMIT_ENABLE": "1",  # counted in Redis until it dies
        "RATELIMIT_PREDICT": "1000000/m",
        "RATELIMIT_PREDICT_BURST": "100000/s",
        "INFERENCE_CACHE_SHARED": "1",  # the shared prediction-cache tier lives in Redis too
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "4",
        "AUDIT_SPILL_DIR": str(tmp_path / "spill"),
        "LOG_LEVEL": "ERROR",
        "PROMETHEUS_MULTIPROC_DIR": None,  # single-process metrics, unless a test gives the server its own folder
        **extra_env,
    }
    return servers.start("gunicorn", env=env, port=port, log=tmp_path / "server.log").process
