"""The live page in a real browser (Playwright driving Debian's Chromium) on a running daphne.

A staff member signs in through the admin login form and opens /live/fraud_score/; the test
sends predictions through the API (POST /v1/infer on the same daphne, with an API key); each
row appears in the page within a second, primary beside shadow.
"""

import os
import time
import urllib.request

import orjson
import pytest
from django.contrib.auth import get_user_model

from mlops import services
from mlops.demo import PRODUCT
from tests.e2e.conftest import CHROMIUM
from tests.e2e.streams.servers import daphne

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("chromium"),  # skipped without Chromium (failed under REQUIRE_SERVICES=1)
]


def infer(base: str, key: str, event_id: str, features: dict) -> dict:
    payload = orjson.dumps({"event_id": event_id, "product": PRODUCT, "features": features})
    request = urllib.request.Request(
        base + "/v1/infer", data=payload, headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


@pytest.fixture
def served(register, api_key, settings):
    """logreg in production, gbdt shadowing all of it; a staff user (whose password the server can check)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    production = register("logreg")
    services.model_version_validate(model_version_id=production.pk, user=None, reason="test")
    services.model_version_promote(model_version_id=production.pk, user=None, reason="test")
    shadow = register("gbdt")
    services.shadow_enable(product=PRODUCT, shadow_model_id=shadow.pk, sample_percent=100, user=None, reason="test")
    get_user_model().objects.create_user("watcher", password="watcher-password-1", is_staff=True)
    return api_key


def test_predictions_appear_in_the_live_page_within_a_second(served, features):
    from playwright.sync_api import sync_playwright

    key = served
    with daphne(LIVE_SESSION_CHECK_SECONDS="1") as base, sync_playwright() as playwright:
        infer(base, key, "warm-up", features)  # the server has loaded its models
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            context = browser.new_context()  # one cookie jar: a second tab shares the session
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.goto(f"{base}/live/{PRODUCT}/")
            assert "/admin/login/" in page.url  # staff only: signed out, the admin's login form
            page.fill("#id_username", "watcher")
            page.fill("#id_password", "watcher-password-1")
            page.click("input[type=submit]")
            page.wait_for_url(f"{base}/live/{PRODUCT}/")
            page.wait_for_function("document.getElementById('live-status').textContent === 'open'")
            delays = []
            for index in range(5):
                event_id = f"live-{index}"
                answered = infer(base, key, event_id, {**features, "mean_radius": 10.0 + index})
                sent = time.monotonic()
                row = page.wait_for_selector(f'#live-rows tr[data-event-id="{event_id}"]', timeout=1_000)
                delays.append(time.monotonic() - sent)
                assert row.get_attribute("data-decision") == answered["decision"]
                assert "logreg@1" in row.inner_text()
            assert max(delays) < 1.0
            # The shadow's score and diff class join the answer's row.
            page.wait_for_function(
                "document.querySelector('#live-rows tr[data-event-id=\"live-4\"]').children[5].textContent.includes('gbdt@1')"
            )
            assert page.locator('#live-counters tr[data-counter="production"] .value').inner_text() == "5"
            # Pause holds rows back; the decision filter hides the others.
            page.click("#live-pause")
            infer(base, key, "while-paused", features)
            page.wait_for_function("/paused: [1-9]/.test(document.getElementById('live-paused-note').textContent)")
            assert page.locator('#live-rows tr[data-event-id="while-paused"]').count() == 0
            page.click("#live-pause")
            page.wait_for_selector('#live-rows tr[data-event-id="while-paused"]')
            page.select_option("#live-filter", "block")
            visible = page.locator("#live-rows tbody tr:not(.hidden)")
            assert all(visible.nth(i).get_attribute("data-decision") == "block" for i in range(visible.count()))
            if os.environ.get("LIVE_SCREENSHOT"):
                page.select_option("#live-filter", "")
                page.screenshot(path=os.environ["LIVE_SCREENSHOT"], full_page=True)
            # Signing out in another tab ends the stream; the page says so instead of reconnecting.
            other = context.new_page()
            other.goto(f"{base}/admin/")
            other.click("#logout-form button[type=submit]")
            other.wait_for_url("**/admin/logout/")
            page.wait_for_function("document.getElementById('live-status').textContent === 'closed'", timeout=5_000)
            assert "sign in again" in page.locator("#live-ended").inner_text()
        finally:
            browser.close()
