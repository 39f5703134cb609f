"""A run on a machine that lacks a server or tool some tests need (tests/prerequisites.py): green
locally, with one line at the end that names what it skipped; red under REQUIRE_SERVICES=1."""

import pytest

from tests import prerequisites

pytest_plugins = ["pytester"]

# Two tests need promtool (through a session fixture: its skip is replayed for each), one needs
# Chromium, one needs nothing, and one is skipped for a reason that is no missing prerequisite.
SUITE = """
import pytest

from tests.prerequisites import needs


@pytest.fixture(scope="session")
def promtool():
    needs("promtool", how="apt-get install prometheus")


@pytest.fixture
def chromium():
    needs("Chromium", how="apt-get install chromium")


def test_rules(promtool):
    pass


def test_metrics(promtool):
    pass


def test_page(chromium):
    pass


def test_plain():
    pass


@pytest.mark.skip(reason="not on this platform")
def test_skipped_for_another_reason():
    pass
"""

# A suite that needs nothing from the machine; one test is skipped, for another reason.
NOTHING_MISSING = """
import pytest


def test_plain():
    pass


@pytest.mark.skip(reason="not on this platform")
def test_skipped_for_another_reason():
    pass
"""

FULL_RUN_WARNING = "not a full run: 3 tests skipped (promtool missing: 2; Chromium missing: 1) - install them or run .ci/run"


@pytest.fixture
def run(pytester, monkeypatch):
    """Run SUITE, or the given source, in this process with the prerequisites plugin (and without
    pytest-django: the tiny suite has no database): the RunResult."""
    monkeypatch.delenv("REQUIRE_SERVICES", raising=False)

    def run(source: str = SUITE):
        pytester.makepyfile(test_suite=source)
        return pytester.runpytest("-ra", "-p", "no:django", "-p", "no:cacheprovider", plugins=[prerequisites])

    return run


def test_without_a_tool_the_run_is_green_and_its_last_lines_say_what_it_skipped(run):
    result = run()

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=4)
    result.stdout.fnmatch_lines(["SKIPPED * missing promtool: apt-get install prometheus", FULL_RUN_WARNING, "*1 passed, 4 skipped*"])
    assert result.stdout.lines[-2] == FULL_RUN_WARNING  # just above the final count
    assert result.stdout.str().count("not a full run") == 1


def test_a_run_that_lacks_nothing_prints_no_such_line(run):
    result = run(NOTHING_MISSING)

    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.no_fnmatch_line("*not a full run*")


def test_under_require_services_a_missing_tool_fails_the_run_and_says_how_to_get_it(run, monkeypatch):
    monkeypatch.setenv("REQUIRE_SERVICES", "1")

    result = run()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1, errors=3)
    result.stdout.fnmatch_lines(["missing promtool: apt-get install prometheus (REQUIRE_SERVICES=1: *"])
    result.stdout.no_fnmatch_line("*not a full run*")
