"""The staff experience in a real browser (Playwright driving Debian's Chromium), on the platform as
`make run` starts it: the demo's traffic on the live page and the dashboard, a canary started from
the rollout page, and every page at the widths of a laptop (1366 px) and a small window (1024 px)."""

import os
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import CHROMIUM
from tests.e2e.embedded import EmbeddedPlatform, embedded_platform
from tests.e2e.test_rollout_browser import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("chromium")]  # skipped without Chromium (failed under REQUIRE_SERVICES=1)

PRODUCT = "fraud_score"
SHADOW_WITHIN_SECONDS = 10
TRAFFIC_WITHIN_MS = 15_000  # for a figure to follow the demo's traffic onto a page


@dataclass
class Demo:
    platform: EmbeddedPlatform
    ready_at: float  # monotonic time at which the server answered /readyz
    traffic: subprocess.Popen


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, browser):
    """The embedded platform with demo traffic started beside the server, as `make run` starts it.

    The browser is up first: what is timed from the server's readiness is the platform, not Chromium's start.
    """
    traffic = ["demo_traffic", "--url", "{url}", "--rate", "4", "--outcomes", "--outcome-delay", "1"]
    # The dashboard refreshes every second here, so that a test sees a change without waiting 5 s.
    with embedded_platform(tmp_path_factory.mktemp("demo-var"), env={"DASHBOARD_REFRESH_SECONDS": "1"}, beside=traffic) as platform:
        yield Demo(platform, time.monotonic(), platform.beside)


@pytest.fixture
def admin_page(demo, browser):
    """A page signed in as the demo's admin, at a laptop's 1366 px."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    username, password = demo.platform.admin
    log_in(page, demo.platform.url, username, password, "/admin/")
    yield page
    context.close()


def horizontal_overflow(page) -> list[str]:
    """What is wider than its box: the page itself, or a list's table inside its scrolling box."""
    return page.evaluate(
        """() => {
            const wide = [];
            const root = document.documentElement;
            if (root.scrollWidth > root.clientWidth) wide.push(`page ${root.scrollWidth} px in ${root.clientWidth} px`);
            for (const box of document.querySelectorAll('#changelist .results, #live-rows, #dashboard-cards')) {
                if (box.scrollWidth > box.clientWidth) wide.push(`${box.id || "list"} ${box.scrollWidth} px in ${box.clientWidth} px`);
            }
            return wide;
        }"""
    )


def test_the_live_page_shows_shadow_scores_within_10_s_of_the_server_being_ready(demo, admin_page):
    from playwright.sync_api import expect

    page = admin_page
    page.goto(f"{demo.platform.url}/live/{PRODUCT}/")
    left = SHADOW_WITHIN_SECONDS - (time.monotonic() - demo.ready_at)
    # A row answered by production with the shadow's model and score beside it (columns 6 and 7).
    shadowed = page.locator("#live-rows tbody tr[data-role=production]").filter(has=page.locator("td:nth-child(7):not(:empty)"))
    expect(shadowed.first).to_be_visible(timeout=max(left, 0.1) * 1000)
    assert "gbdt@1" in shadowed.first.locator("td:nth-child(6)").inner_text()
    assert time.monotonic() - demo.ready_at < SHADOW_WITHIN_SECONDS


def test_the_dashboard_shows_the_demo_product_and_its_numbers_follow_the_traffic(demo, admin_page):
    from playwright.sync_api import expect

    page = admin_page
    expect(page).to_have_title("Products | MLOps platform")
    card = page.locator(f'#dashboard-cards .product-card[data-product="{PRODUCT}"]')
    expect(card.locator(".production")).to_have_text("logreg@1")
    expect(card.locator(".shadow")).to_have_text("gbdt@1 on 100%")
    requests = card.locator('tr[data-role="production"] .requests')
    expect(requests).not_to_have_text("0", timeout=TRAFFIC_WITHIN_MS)
    before = int(requests.inner_text())
    # The page refreshes itself: without a reload the count grows as the demo's requests arrive.
    page.wait_for_function(
        "([selector, before]) => Number(document.querySelector(selector).textContent) > before",
        arg=[f'.product-card[data-product="{PRODUCT}"] tr[data-role="production"] .requests', before],
        timeout=TRAFFIC_WITHIN_MS,
    )
    expect(card.locator(".sparkline polyline.role-shadow")).to_have_count(1)
    expect(page.locator("#content-main a[href='/admin/mlops/modelversion/']").first).to_be_visible()  # the stock lists stay


def test_a_canary_started_from_the_rollout_page_appears_on_the_dashboard_with_its_verdict(demo, admin_page):
    from playwright.sync_api import expect

    page = admin_page
    card = page.locator(f'.product-card[data-product="{PRODUCT}"]')
    card.get_by_role("link", name="Rollout").click()
    page.click('details[data-action="set"] summary')
    page.fill('input[name="set-canary_percent"]', "25")
    page.fill('input[name="set-reason"]', "try gbdt on a quarter of the traffic")
    page.click('details[data-action="set"] input[type=submit]')
    expect(page.locator("#canary-percent")).to_have_text("25%")
    page.goto(f"{demo.platform.url}/admin/")
    expect(card.locator(".canary")).to_contain_text("gbdt@1 at 25% (step 2 of 4)")
    expect(card.locator(".canary .verdict")).to_have_text("gathering evidence")  # the guard's floor is 200 canary requests
    # The demo's traffic reaches it: every worker serves a change within 2 s, the log writer flushes every
    # 0.2 s and the cards are shared for 2 s, on a machine other suites keep busy.
    expect(card.locator('tr[data-role="canary"] .requests')).not_to_have_text("0", timeout=TRAFFIC_WITHIN_MS)


def test_every_admin_list_fits_1366_px_without_horizontal_scroll(demo, admin_page):
    from django.contrib import admin
    from django.urls import reverse

    page = admin_page
    too_wide = {}
    for model in admin.site._registry:
        path = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        page.goto(f"{demo.platform.url}{path}")
        page.wait_for_selector("#changelist")
        if os.environ.get("STAFF_SCREENSHOTS"):  # a folder: one picture per list, to look at the wrapping
            page.screenshot(path=f"{os.environ['STAFF_SCREENSHOTS']}/{model._meta.model_name}.png", full_page=True)
        if wide := horizontal_overflow(page):
            too_wide[path] = wide
    assert not too_wide, f"lists wider than 1366 px: {too_wide}"


@pytest.mark.parametrize("path", ["/admin/", f"/live/{PRODUCT}/"])
def test_the_dashboard_and_the_live_page_fit_a_1024_px_window(demo, admin_page, path):
    page = admin_page
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(f"{demo.platform.url}{path}")
    page.wait_for_selector("#dashboard-cards .product-card, #live-rows tbody tr")
    if os.environ.get("STAFF_SCREENSHOTS"):
        page.screenshot(path=f"{os.environ['STAFF_SCREENSHOTS']}/1024{path.replace('/', '-')}.png", full_page=True)
    assert not horizontal_overflow(page)


def test_demo_traffic_was_never_refused_and_stops_on_sigterm(demo):
    demo.traffic.terminate()  # as `make run` stops it when the server ends
    assert demo.traffic.wait(timeout=30) == 0
    output = (demo.platform.var_dir / "beside.log").read_text()
    last = output.strip().splitlines()[-1]
    assert " 0 refused (429)" in last and " 0 other errors" in last, output
    assert int(last.split("; ")[-1].split()[0]) > 0, last  # outcomes posted
