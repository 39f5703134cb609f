"""WSGI entry point of the `web` process (admin + DRF)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

application = get_wsgi_application()
