"""ASGI entry point of the `stream` process (daphne + Channels).

``/stream/`` paths go to the Channels SSE consumers (`inference.streams`), behind
``AuthMiddlewareStack`` (session, so the live pages know the staff member; the dual-model
stream authenticates like the API, API key or JWT included); everything else goes to Django.
In the embedded default this one process serves everything (and, with DEBUG on, the admin's
static files); in production a path router sends ``/stream/`` here and the rest to the WSGI
`web` process.

Daphne's requests are Twisted's, which parse a multipart body themselves before the application
sees it; Django parses it again, so that is twice the memory for a model upload, and a body
Python's email parser rejects is answered by Twisted with a bare 400 (no JSON, no log line:
twisted#9739, daphne#447). `_BodiesParsedByDjango` turns Twisted's parse off.

Importing it is what makes a process a server (daphne, uvicorn, granian, daphne's
``runserver`` child), so it announces that to the apps (`mlops.hooks.serving_started`).
"""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from daphne import http_protocol  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from inference.streams.dual import DualInferConsumer  # noqa: E402
from inference.streams.live import LiveConsumer  # noqa: E402
from mlops import hooks  # noqa: E402


class _BodiesParsedByDjango(http_protocol.WebRequest):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)


# daphne's HTTPFactory builds each connection's requests from this module attribute.
http_protocol.WebRequest = _BodiesParsedByDjango

STREAM_PREFIX = "/stream/"

stream_app = AuthMiddlewareStack(
    URLRouter(
        [
            path("stream/v1/infer", DualInferConsumer.as_asgi()),
            path("stream/live/<slug:product>/", LiveConsumer.as_asgi()),
        ]
    )
)
django_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app


async def not_found(scope, receive, send):
    await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"error": {"code": "not_found", "message": "No such stream."}}'})


async def http_app(scope, receive, send):
    """``/stream/...`` to the consumers (404 for an unknown stream), the rest to Django."""
    if scope["path"].startswith(STREAM_PREFIX):
        try:
            return await stream_app(scope, receive, send)
        except ValueError as exc:  # URLRouter: no route matched
            if "No route found" not in str(exc):
                raise
            return await not_found(scope, receive, send)
    return await django_app(scope, receive, send)


application = ProtocolTypeRouter({"http": http_app})
hooks.serving_started.send(sender=__name__)
