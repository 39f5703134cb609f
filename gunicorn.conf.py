"""gunicorn settings for the ``web`` process; gunicorn reads ``./gunicorn.conf.py`` by itself.

``gunicorn mlops.wsgi`` from the repository root. The server settings and the serving hooks
come from ``inference.gunicorn_conf`` (model warm-up, metrics clean-up); this file adds the
prediction log's shutdown on top, so that every answered request's record reaches the log.

Shutdown, and why these numbers:
- SIGTERM to the master: it forwards SIGTERM to each worker; a worker stops accepting, finishes
  its in-flight requests, then leaves its run loop. ``worker_exit`` (below) then flushes the
  log writer, and ``atexit`` flushes again (a no-op by then) as the interpreter ends.
- SIGINT/SIGQUIT (quick shutdown): the worker exits at once through ``sys.exit``; requests in
  flight are cut, but everything already answered is flushed by ``worker_exit``/``atexit``.
- ``graceful_timeout`` (30 s): the master kills a worker (SIGKILL, nothing flushes) that has
  not exited by then. It must exceed the longest request (``timeout``) plus
  ``AUDIT_SHUTDOWN_TIMEOUT`` (10 s by default); if the database is unreachable the flush spills
  to disk in milliseconds, so the 10 s only matter for a database that hangs.
- The writer's own SIGTERM/SIGINT handlers are turned off in workers: the worker installs its
  handlers after the fork and must stay in charge of them (see ``audit.writer``).
"""

import os

try:
    from inference import gunicorn_conf as _serving
    from inference.gunicorn_conf import *  # noqa: F403 - server settings and serving hooks
except ImportError:  # the serving app without its gunicorn settings
    _serving = None
    bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
    workers = int(os.environ.get("WEB_CONCURRENCY", "1"))

wsgi_app = os.environ.get("WEB_WSGI_APP", "mlops.wsgi:application")
timeout = int(os.environ.get("WEB_TIMEOUT", "15"))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "30"))


def _serving_hook(name):
    return getattr(_serving, name, None) if _serving is not None else None


def post_worker_init(worker):
    hook = _serving_hook("post_worker_init")
    if hook is not None:
        hook(worker)
    from audit import writer

    writer.use_server_signal_handling()


def worker_exit(server, worker):
    hook = _serving_hook("worker_exit")
    if hook is not None:
        hook(server, worker)
    try:
        from audit import writer
    except Exception:  # the app never loaded in this worker: nothing was logged
        return
    if not writer.shutdown():
        server.log.error("worker %s: prediction log flush timed out; unwritten records are lost", worker.pid)
