"""WSGI entry point of the `web` process (admin + DRF).

Importing it is what makes a process a server (gunicorn and uWSGI workers, ``runserver``'s
child), so it announces that to the apps (`mlops.hooks.serving_started`).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

application = get_wsgi_application()

from mlops import hooks  # noqa: E402  (needs the app registry)

hooks.serving_started.send(sender=__name__)
