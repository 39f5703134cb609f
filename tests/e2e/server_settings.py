"""Settings of the server processes the security tests start: the real settings, probe URLs."""

from mlops.settings import *  # noqa: F403

ROOT_URLCONF = "tests.probe_urls"
