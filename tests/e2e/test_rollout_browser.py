"""The rollout page in a real browser (Playwright driving Debian's Chromium) against a live server."""

import os

import pytest

from tests.e2e.conftest import CHROMIUM

PRODUCT = "fraud_score"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("chromium"),  # skipped without Chromium (failed under REQUIRE_SERVICES=1)
]


@pytest.fixture
def browser_page():
    """A fresh Chromium page. DB work happens before and after, never while Playwright's event loop runs in this thread."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page()
        page.set_default_timeout(10_000)
        yield page
        browser.close()


def log_in(page, base_url: str, username: str, password: str, next_path: str) -> None:
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}")


@pytest.fixture
def rollout_path(canary):
    return f"/admin/mlops/canaryconfig/rollout/{PRODUCT}/"


@pytest.fixture
def staff(ops_user, viewer_user):
    return {"ops": ops_user, "viewer": viewer_user}


def test_ops_step_a_canary_from_10_to_25_percent(live_server, staff, rollout_path, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    log_in(page, live_server.url, "ops", "ops-password-1", rollout_path)
    expect(page.locator("#canary-percent")).to_have_text("10%")

    page.click('details[data-action="step"] summary')
    page.fill('input[name="step-reason"]', "10% was healthy for an hour")
    page.click('details[data-action="step"] input[type=submit]')

    expect(page.locator(".messagelist .success")).to_contain_text("Canary stepped up. Canary 25%, production 75%.")
    expect(page.locator("#canary-percent")).to_have_text("25%")
    expect(page.locator("#traffic-split .canary")).to_contain_text("canary 25%")
    expect(page.locator("#rollout-history")).to_contain_text("10% was healthy for an hour")
    # The counters come from the polled JSON endpoint and the chart is drawn in place.
    expect(page.locator('#rollout-counters tr[data-role="canary"] .requests')).to_have_text("0")
    expect(page.locator("#rollout-chart polyline")).to_have_count(4)
    expect(page.locator("#workers-summary")).to_be_visible()
    if os.environ.get("ROLLOUT_SCREENSHOT"):
        page.screenshot(path=os.environ["ROLLOUT_SCREENSHOT"], full_page=True)


def test_a_viewer_sees_the_page_without_buttons_and_a_post_is_refused(live_server, staff, rollout_path, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    log_in(page, live_server.url, "viewer", "viewer-password-1", rollout_path)
    expect(page.locator("#canary-percent")).to_have_text("10%")
    expect(page.locator("#rollout-actions")).to_have_count(0)

    status = page.evaluate(
        """async (url) => {
            const token = document.cookie.split('; ').find((c) => c.startsWith('csrftoken=')).split('=')[1];
            const body = new URLSearchParams({'step-reason': 'sneaky'});
            const answer = await fetch(url, {method: 'POST', body, headers: {'X-CSRFToken': token}, credentials: 'same-origin'});
            return [answer.status, (await answer.text()).includes('CSRF')];
        }""",
        f"{live_server.url}/admin/mlops/canaryconfig/rollout/{PRODUCT}/step/",
    )
    assert status == [403, False]  # refused for the permission, not for a missing CSRF token
    page.reload()
    expect(page.locator("#canary-percent")).to_have_text("10%")
