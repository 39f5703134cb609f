"""gunicorn settings for the ``web`` process: ``gunicorn -c python:inference.gunicorn_conf mlops.wsgi``.

- Each worker starts loading its models as soon as it is forked (``post_worker_init``), so
  ``/readyz`` turns green without waiting for a first request.
- With ``PROMETHEUS_MULTIPROC_DIR`` set (several workers), a dead worker's live gauges are
  removed from the shared metrics folder (``child_exit``). The folder must exist, be empty at
  start and be set in the environment before the server starts.
"""

import os

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = int(os.environ.get("WEB_KEEPALIVE", "5"))
backlog = 2048


def post_worker_init(worker):
    from inference.runtime import runtime
    from mlops.background import interpreter

    interpreter.tune_for_serving()  # garbage collection and the GIL switch interval
    runtime.ensure_started()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
