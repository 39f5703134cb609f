"""ASGI entry point of the `stream` process (daphne + Channels).

In the embedded default this one process serves everything; in production a path router
sends `/stream/` here and the rest to the WSGI `web` process.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs the app registry)

application = ProtocolTypeRouter({"http": django_asgi_app})
