"""What a test needs from the machine beyond the virtualenv (a server, a binary, a browser), and the
line that says so at the end of a run that went without some of it.

Locally a missing prerequisite skips the tests that need it, so that ``make test`` on a fresh clone
is green; under ``REQUIRE_SERVICES=1`` (CI's ``.ci/run``, which installs and starts everything) it
fails them instead, so CI never passes without having run them. Registered by tests/conftest.py.
"""

import os
from collections import Counter
from typing import NoReturn

import pytest
from django.db import connection

# The user property a skipped test's report carries: what it lacked (read by the summary below).
MISSING = "missing prerequisite"


def services_required() -> bool:
    """True when the run must have every service and tool: a missing one fails, never skips."""
    return os.environ.get("REQUIRE_SERVICES") == "1"


def needs(what: str, *, how: str) -> NoReturn:
    """Stop the test that called this for lack of ``what``: skip it, or fail it under
    ``REQUIRE_SERVICES=1``; ``how`` says how to get it."""
    reason = f"missing {what}: {how}"
    if services_required():
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1: a missing prerequisite fails the run)", pytrace=False)
    skip = pytest.skip.Exception(reason)
    skip.missing = what  # tells this skip from any other in pytest_runtest_makereport
    raise skip


def needs_postgresql() -> None:
    """For a test that another process's server must share the test database with, or that cuts
    its connections: SQLite's test database lives in this process, out of any server's reach."""
    if connection.vendor != "postgresql":
        needs("PostgreSQL", how="start it on 127.0.0.1:5432 (.ci/run starts it); this run fell back to SQLite")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, pytest.skip.Exception) and hasattr(call.excinfo.value, "missing"):
        report.user_properties.append((MISSING, call.excinfo.value.missing))
    return report


# tryfirst makes this the outermost wrapper: the line comes after pytest's short test summary,
# right above the final count, where a glance at a green run's last lines finds it.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    yield
    missing = Counter(
        value
        for report in terminalreporter.stats.get("skipped", [])
        for name, value in getattr(report, "user_properties", ())
        if name == MISSING
    )
    if missing:
        total = missing.total()
        counts = "; ".join(f"{what} missing: {count}" for what, count in missing.most_common())
        tests = "test" if total == 1 else "tests"
        terminalreporter.write_line(
            f"not a full run: {total} {tests} skipped ({counts}) - install them or run .ci/run", yellow=True, bold=True
        )
