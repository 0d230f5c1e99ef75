"""The dashboard's sign-in and home in headless Chromium: signing in (a wrong password first), the home page's
figures and charts (SVG, with their tables), keyboard-only use (skip link, focus order, visible focus, sign
out), and a 375 px wide phone. A screenshot per step under test-artifacts/dashboard/<test name>/.

The merchant's history is made through the API and the payment pump; then some payments' `created` are moved
back by whole days in the database, so the 30-day chart has more than one day to draw (nothing else reads it).
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tender.services.merchants import create_merchant
from tests.support.browser import ARTIFACTS, Shots, folder_of
from tests.support.dashboard_client import PASSWORD, new_user
from tests.support.payments import authorizer, drain, pay

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PHONE = {"viewport": {"width": 375, "height": 812}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DASHBOARD_ARTIFACTS = ARTIFACTS.parent / "dashboard"


@pytest.fixture
def dash_shots(request: pytest.FixtureRequest) -> Shots:
    folder = DASHBOARD_ARTIFACTS / folder_of(request.node).name
    for old in folder.glob("*.png"):
        old.unlink()
    return Shots(folder)


async def shop_with_history(api: Any, container: Any) -> tuple[Any, str]:
    """A merchant with a few weeks of payments (successes, declines, two currencies) and a dashboard user."""
    shop = await create_merchant(container.db, f"Browser Shop {uuid.uuid4().hex[:4]}")
    plan = [  # (days ago, card, amount, currency)
        (0, "4242424242424242", 2500, "BRL"),
        (0, "4242424242424242", 12990, "BRL"),
        (0, "4000000000000002", 5000, "BRL"),
        (0, "5555555555554444", 4900, "USD"),
        (1, "4242424242424242", 7000, "BRL"),
        (2, "4242424242424242", 3000, "BRL"),
        (2, "4000000000009995", 3000, "BRL"),
        (4, "4242424242424242", 15000, "BRL"),
        (7, "4242424242424242", 9900, "BRL"),
        (7, "4242424242424242", 1990, "USD"),
        (11, "4242424242424242", 4500, "BRL"),
        (16, "4242424242424242", 21000, "BRL"),
        (23, "4000000000000002", 2000, "BRL"),
        (23, "4242424242424242", 8000, "BRL"),
    ]
    made = [
        (days, await pay(api, shop, card, amount=amount, currency=currency)) for days, card, amount, currency in plan
    ]
    await drain(authorizer(container))
    async with container.db.connection() as conn:
        for days, payment in made:
            if days:
                await conn.execute(
                    "UPDATE payments SET created = created - %s WHERE id = %s", (timedelta(days=days), payment["id"])
                )
    return shop, await new_user(container, shop.merchant.id)


async def sign_in(page: Page, base: str, email: str, password: str = PASSWORD) -> None:
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def test_sign_in_and_see_the_charts(
    api: Any, container: Any, tender_url: str, page: Page, dash_shots: Shots
) -> None:
    shop, email = await shop_with_history(api, container)
    refused: list[str] = []  # a CSP refusal (an inline script or style, htmx's included) shows on the console
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    await page.goto(f"{tender_url}/dashboard")
    await expect(page).to_have_url(re.compile(r"/dashboard/login\?next=/dashboard$"))
    await expect(page.get_by_role("heading", name="Sign in to Tender")).to_be_visible()
    await dash_shots.shot(page, "sign-in form")

    await sign_in(page, tender_url, email, "not my password")
    await expect(page.get_by_role("alert")).to_have_text("The email or password is wrong.")
    await dash_shots.shot(page, "wrong password")

    await sign_in(page, tender_url, email)
    await expect(page).to_have_url(f"{tender_url}/dashboard")
    await expect(page.get_by_role("heading", name=shop.merchant.name, level=1)).to_be_visible()
    await expect(page.get_by_test_id("today-count")).to_have_text("4")
    await expect(page.get_by_test_id("today-success-rate")).to_have_text("75.0%")
    # The charts are images with a name and a description, and their numbers are tables beside them.
    chart = page.get_by_role("img", name="Payments per day")
    await expect(chart).to_be_visible()
    assert await chart.locator("rect[fill^='url(#payments-per-day-p']:has(title)").count() == 60  # 30 days x 2 series
    await expect(page.get_by_role("img", name="Volume per day (BRL)")).to_be_visible()
    table = page.get_by_role("region", name="Payments per day: the numbers")
    await expect(table.get_by_role("row")).to_have_count(31)
    today_row = table.get_by_role("row").nth(1)  # after the header: the newest day first
    await expect(today_row.get_by_role("cell")).to_have_text(["4", "3"])
    await expect(page.get_by_role("link", name="Payments")).to_be_visible()
    await page.get_by_role("img", name="Payments per day").scroll_into_view_if_needed()
    await page.screenshot(path=dash_shots.folder / "home-full.png", full_page=True)  # the README's picture
    await dash_shots.shot(page, "home with charts")
    assert await page.evaluate("typeof htmx") == "object"  # the vendored htmx loaded under the CSP
    assert refused == [], refused

    # The issues panel refreshes itself with htmx; once the session is gone (timed out, signed out elsewhere)
    # the refresh takes the whole page to the sign-in form, and back to the home page after it.
    async with container.db.connection() as conn:
        await conn.execute(
            "DELETE FROM dashboard_sessions WHERE user_id = (SELECT id FROM dashboard_users WHERE email = %s)", (email,)
        )
    await page.evaluate("htmx.ajax('GET', '/dashboard/issues', {target: '#open-issues', swap: 'outerHTML'})")
    await expect(page).to_have_url(re.compile(r"/dashboard/login\?next=/dashboard$"))
    await expect(page.get_by_role("heading", name="Sign in to Tender")).to_be_visible()
    await dash_shots.shot(page, "session ended during a refresh")


async def test_keyboard_only(api: Any, container: Any, tender_url: str, page: Page, dash_shots: Shots) -> None:
    _shop, email = await shop_with_history(api, container)
    await page.goto(f"{tender_url}/dashboard/login")
    await expect(page.get_by_label("Email")).to_be_focused()  # autofocus
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Password", exact=True)).to_be_focused()
    await page.keyboard.type(PASSWORD)
    await dash_shots.shot(page, "typed with the keyboard")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{tender_url}/dashboard")

    # First Tab: the skip link, visible when focused; Enter moves focus to the page's content.
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    await dash_shots.shot(page, "skip link")
    await page.keyboard.press("Enter")
    await expect(page.locator("main#main")).to_be_focused()

    # From the top: brand, account, sign out, then the navigation in order; focus is drawn (an outline).
    await page.goto(f"{tender_url}/dashboard")
    order = []
    for _ in range(6):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate("document.activeElement.textContent.trim()"))
    assert order == ["Skip to content", "Tender", "Change password", "Sign out", "Home", "Payments"], order
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    await dash_shots.shot(page, "focus on payments")

    # Sign out from the keyboard.
    await page.get_by_role("button", name="Sign out").focus()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{tender_url}/dashboard/login")
    await page.goto(f"{tender_url}/dashboard")
    await expect(page).to_have_url(re.compile(r"/dashboard/login"))
    await dash_shots.shot(page, "signed out")


async def test_a_phone_375_px_wide(
    api: Any, container: Any, tender_url: str, browser: Browser, dash_shots: Shots
) -> None:
    _shop, email = await shop_with_history(api, container)
    context = await browser.new_context(**PHONE)
    try:
        page = await context.new_page()
        await page.goto(f"{tender_url}/dashboard/login")
        await dash_shots.shot(page, "sign-in on a phone")
        await sign_in(page, tender_url, email)
        await expect(page.get_by_role("img", name="Payments per day")).to_be_visible()
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"horizontal scroll: the page is {width}px wide"
        box = await page.get_by_role("img", name="Payments per day").bounding_box()
        assert box is not None and box["width"] <= 375
        await dash_shots.shot(page, "home on a phone")
    finally:
        await context.close()


async def test_an_operator_signs_in_with_the_admin_key(
    api: Any, container: Any, tender_url: str, page: Page, dash_shots: Shots
) -> None:
    shop, _email = await shop_with_history(api, container)
    await page.goto(f"{tender_url}/dashboard/login")
    await page.get_by_text("Operator? Sign in with the admin key").click()
    await page.get_by_label("Admin key").fill(container.settings.admin_key.get_secret_value())
    await page.get_by_role("button", name="Sign in as operator").click()
    await expect(page.get_by_role("heading", name="All merchants", level=1)).to_be_visible()
    await dash_shots.shot(page, "operator totals")
    await page.get_by_label("Merchant to view").select_option(shop.merchant.id)
    await page.get_by_role("button", name="View").click()
    await expect(page.get_by_role("heading", name=shop.merchant.name, level=1)).to_be_visible()
    await expect(page.get_by_test_id("today-count")).to_have_text("4")
    await expect(
        page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Dead letters")
    ).to_be_visible()
    await dash_shots.shot(page, "operator views a merchant")
