"""The comparison page in a real browser (Playwright driving Debian's Chromium) at a laptop's 1366 px."""

import os

import pytest

from tests.e2e.conftest import CHROMIUM
from tests.e2e.test_rollout_browser import log_in

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("chromium"),  # skipped without Chromium (failed under REQUIRE_SERVICES=1)
]


@pytest.fixture
def segmented_log(settings):
    from tests.audit import segmented
    from tests.audit.conftest import make_version

    settings.EVIDENCE_SEGMENTS = segmented.SEGMENTS
    segmented.build(make_version("logreg", "1", status="production"), make_version("gbdt", "1", status="canary", threshold=0.6))


@pytest.fixture
def auditor(django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("auditor", password="auditor-password-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_predictionlog"))
    return user


def test_the_comparison_page_draws_intervals_without_horizontal_scroll_at_1366_px(live_server, segmented_log, auditor):
    from playwright.sync_api import expect, sync_playwright

    path = "/admin/audit/predictionlog/compare/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.set_default_timeout(10_000)
        log_in(page, live_server.url, "auditor", "auditor-password-1", path)
        page.goto(f"{live_server.url}{path}?product=fraud_score&window=1h")
        expect(page.locator("#rate-false_positive_rate .interval-production")).to_have_count(1)
        expect(page.locator("#rate-false_positive_rate .interval-canary")).to_have_count(1)
        expect(page.locator("#rate-false_positive_rate .interval-difference")).to_have_count(1)
        expect(page.locator(".segment-table .segment-row")).to_have_count(4)  # two feature bins, two score bands
        # Drawn, not only present: the whisker of the worse segment has a real width on screen.
        whisker = page.locator('.segment-table[data-kind="feature"] .segment-row').nth(1).locator(".interval-difference .whisker").first
        assert whisker.bounding_box()["width"] > 5
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        if os.environ.get("COMPARE_SCREENSHOT"):
            page.screenshot(path=os.environ["COMPARE_SCREENSHOT"], full_page=True)
        browser.close()
    assert widths[0] <= widths[1], f"the page scrolls sideways at 1366 px: {widths[0]} px wide"
