"""End-to-end tests: real server processes (tests/servers.py) or a browser. Every test here is
marked ``e2e``, so that ``pytest -m "not e2e"`` runs the in-process suite alone."""

import os
import shutil
from pathlib import Path

import pytest

from tests.prerequisites import needs

HERE = Path(__file__).parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium, which Playwright drives; a browser test is skipped without it."""
    path = shutil.which(CHROMIUM)
    if path is None:
        needs("Chromium", how=f"apt-get install chromium (.ci/run installs it), or set CHROMIUM_PATH (looked at {CHROMIUM})")
    return path


@pytest.fixture(scope="session")
def embedded_platform(tmp_path_factory):
    """The platform as `make run` starts it (tests/e2e/embedded.py), once per session: its base URL,
    an ``internal_service`` and an ``ml_ops`` key, and the demo admin's credentials."""
    from tests.e2e.embedded import embedded_platform as start

    with start(tmp_path_factory.mktemp("embedded-var")) as platform:
        yield platform
