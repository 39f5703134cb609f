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
