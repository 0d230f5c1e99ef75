"""Hosted checkout `mode: "subscription"` in headless Chromium: the shopper sees the price per period, enters a
card once and subscribes; the page follows the first invoice's payment (the payment pump runs meanwhile, as
`tender worker` would) and the shopper lands at the shop's success_url. Checked against the API: the session is
complete, the subscription active on a customer made for the shopper, the card saved to that customer and its
first invoice paid by an off-session payment. A decline shows the form again, and another card starts the
subscription. Screenshots of every step in test-artifacts/browser/<test name>/."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.support.api import auth
from tests.support.browser import TIMEOUT_MS, Shots
from tests.support.checkout_page import GOOD, Shop, Worker, api_get, fill_card, see_processing, session_now

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DECLINED = "4000000000009995"  # insufficient funds


async def open_subscription(api: Any, merchant: Any, shop: Shop, order: str, **plan: Any) -> dict[str, Any]:
    body = {
        "mode": "subscription",
        "subscription": {"amount": 1990, "currency": "BRL", "interval": "month", **plan},
        "reference": order,
        "description": "Gold plan",
        "success_url": f"{shop.url}/thanks?order={order}",
        "cancel_url": f"{shop.url}/cart?order={order}",
    }
    r = await api.post("/v1/checkout/sessions", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def see_subscription_form(page: Page, merchant: Any, shots: Shots, step: str) -> None:
    await expect(page).to_have_title(f"Subscribe: 19.90 BRL / month · {merchant.merchant.name}")
    await expect(page.get_by_test_id("amount")).to_have_text("19.90 BRL / month")
    await expect(page.locator("#terms")).to_have_text(
        "19.90 BRL every month, until you cancel. Your card is saved for these payments."
    )
    await expect(page.get_by_role("button", name="Subscribe")).to_be_enabled()
    await shots.shot(page, step)


async def lands_subscribed(page: Page, shop: Shop, session: dict[str, Any], order: str, shots: Shots) -> None:
    await expect(page.get_by_role("heading", name="Subscription started")).to_be_visible(timeout=TIMEOUT_MS)
    await shots.shot(page, "subscription started")
    target = f"{shop.url}/thanks?order={order}&session_id={session['id']}&status=succeeded"
    await expect(page).to_have_url(target, timeout=TIMEOUT_MS)
    await expect(page.get_by_role("heading", name="Back at the shop")).to_be_visible()
    await shots.shot(page, "back at the shop")


async def subscribed(api: Any, merchant: Any, session: dict[str, Any]) -> dict[str, Any]:
    """The session complete; its subscription active, paid by the card saved to its customer."""
    now = await session_now(api, merchant, session)
    assert now["status"] == "complete", now
    subscription = await api_get(api, merchant, f"/v1/subscriptions/{now['subscription']}")
    assert (subscription["status"], subscription["customer"]) == ("active", now["customer"])
    payment = await api_get(api, merchant, f"/v1/payments/{now['payment']}")
    assert (payment["status"], payment["amount"], payment["off_session"]) == ("succeeded", 1990, True)
    methods = (await api_get(api, merchant, f"/v1/customers/{now['customer']}/payment_methods"))["data"]
    [saved] = [m for m in methods if m["id"] == payment["payment_method"]["id"]]  # saved to the shopper
    assert saved["card"]["last4"] == GOOD[-4:]
    return now


async def test_subscribe_with_a_card(
    api: Any, merchant: Any, tender_url: str, shop: Shop, worker: Worker, page: Page, shots: Shots
) -> None:
    session = await open_subscription(api, merchant, shop, "sub_gold")
    assert session["url"] == f"{tender_url}/checkout/{session['id']}"
    response = await page.goto(session["url"])
    assert response is not None and response.status == 200
    await see_subscription_form(page, merchant, shots, "subscription form")
    await fill_card(page, GOOD)
    await shots.shot(page, "card filled in")
    await page.get_by_role("button", name="Subscribe").click()
    await see_processing(page, shots)
    async with worker.running():
        await lands_subscribed(page, shop, session, "sub_gold", shots)
    await subscribed(api, merchant, session)


async def test_a_declined_card_then_another_starts_the_subscription(
    api: Any, merchant: Any, tender_url: str, shop: Shop, worker: Worker, phone_page: Page, shots: Shots
) -> None:
    page = phone_page
    session = await open_subscription(api, merchant, shop, "sub_retry")
    await page.goto(session["url"])
    await see_subscription_form(page, merchant, shots, "subscription form")
    await fill_card(page, DECLINED)
    await page.get_by_role("button", name="Subscribe").tap()
    await see_processing(page, shots)
    async with worker.running():
        alert = page.get_by_role("alert")
        await expect(alert).to_have_text("Your card was declined. Try another card.", timeout=TIMEOUT_MS)
    await see_subscription_form(page, merchant, shots, "declined, the form again")
    first = await session_now(api, merchant, session)
    assert first["status"] == "open"

    await fill_card(page, GOOD)
    await page.get_by_role("button", name="Subscribe").tap()
    await see_processing(page, shots)
    async with worker.running():
        await lands_subscribed(page, shop, session, "sub_retry", shots)
    done = await subscribed(api, merchant, session)
    assert done["subscription"] != first["subscription"]
    canceled = await api_get(api, merchant, f"/v1/subscriptions/{first['subscription']}")
    assert canceled["status"] == "canceled"  # the declined card's subscription never charges again
