"""The hosted checkout page (/checkout/{id}) as a shopper meets it, in headless Chromium.

Tender's API app is served on a real loopback port (with its live-status hub, so the processing view's SSE
stream hears of a change at once) and the session's `url` points there; the shop is a small page served
here that records how the shopper came back. The payment pump is the test's own: it runs while the
browser waits on the processing view, as `tender worker` would. What the shopper sees is checked against
the API: the merchant's payments (`GET /v1/payments`) and the session's `payment` and `status`.

The fixtures (`tender_url`, `shop`, `worker`, `simulator`) are in tests/browser/conftest.py, the shopper's steps
in tests/support/checkout_page.py: the alternative methods' tests use them too.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tender.worker.pumps import ExpiryPump
from tests.support.browser import TIMEOUT_MS, Shots
from tests.support.checkout_page import (
    GOOD,
    Shop,
    Simulator,
    Worker,
    api_get,
    fill_card,
    lands_at_the_shop,
    open_form,
    open_session,
    paid_once,
    payments_of,
    see_form,
    see_processing,
    session_now,
)
from tests.support.payments import THREE_DS, attempt_of, make_due, notification_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DECLINED = "4000000000009995"  # insufficient funds
PHONE_WIDTH = 390


# -- helpers ---------------------------------------------------------------------------------------------


async def wait_for_payment(api: Any, merchant: Any, payment_id: str, status: str) -> None:
    for _ in range(200):
        if (await api_get(api, merchant, f"/v1/payments/{payment_id}"))["status"] == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"payment {payment_id} never became {status}")


async def fits_a_phone(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH, f"horizontal scroll: the page is {width}px wide"


# -- the tests -------------------------------------------------------------------------------------------


async def test_pay_by_card(
    api: Any, merchant: Any, tender_url: str, shop: Shop, worker: Worker, page: Page, shots: Shots
) -> None:
    session = await open_session(api, merchant, shop, "ord_card")
    assert session["url"] == f"{tender_url}/checkout/{session['id']}"
    await open_form(page, session, merchant, shots)
    await fill_card(page, GOOD)
    await shots.shot(page, "card filled in")
    await page.get_by_role("button", name="Pay 25.00 BRL").click()
    await see_processing(page, shots)
    async with worker.running():
        await lands_at_the_shop(page, shop, session, "ord_card", shots)
    payment = await paid_once(api, merchant, session, "succeeded")
    assert (payment["amount"], payment["currency"], payment["amount_captured"]) == (2500, "BRL", 2500)


async def test_a_decline_then_another_card_in_the_same_session_on_a_phone(
    api: Any, merchant: Any, tender_url: str, shop: Shop, worker: Worker, phone_page: Page, shots: Shots
) -> None:
    page = phone_page
    session = await open_session(api, merchant, shop, "ord_retry")
    await open_form(page, session, merchant, shots)
    await fits_a_phone(page)
    pay = page.get_by_role("button", name="Pay 25.00 BRL")
    box = await pay.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE_WIDTH

    await fill_card(page, DECLINED)
    await pay.tap()
    await see_processing(page, shots)
    await fits_a_phone(page)
    async with worker.running():
        alert = page.get_by_role("alert")
        # Never why (a card tester would learn from it): the merchant gets the decline_code, below.
        await expect(alert).to_have_text("Your card was declined. Try another card.", timeout=TIMEOUT_MS)
    await see_form(page, session, merchant, shots, "declined, the form again")
    await fits_a_phone(page)
    assert await page.get_by_label("Card number").input_value() == ""  # the number is never sent back
    [failed] = await payments_of(api, merchant)
    assert (failed["status"], failed["decline_code"]) == ("failed", "insufficient_funds")
    assert (await session_now(api, merchant, session))["status"] == "open"

    await fill_card(page, GOOD)
    await pay.tap()
    await see_processing(page, shots)
    async with worker.running():
        await lands_at_the_shop(page, shop, session, "ord_retry", shots)
    assert (await paid_once(api, merchant, session, "failed", "succeeded"))["id"] != failed["id"]


async def see_challenge(page: Page, shots: Shots) -> None:
    """The simulator's 3-D Secure challenge page, where the checkout page sent the shopper."""
    await expect(page).to_have_url(re.compile(r"^http://simulator\.test/3ds/sim_\w+$"), timeout=TIMEOUT_MS)
    await expect(page).to_have_title("3-D Secure challenge")
    await expect(page.locator("#amount")).to_have_text("25.00 BRL")
    await expect(page.get_by_text("ending in 3184")).to_be_visible()
    await shots.shot(page, "3-D Secure challenge")


async def challenged(
    api: Any, merchant: Any, session: dict[str, Any], worker: Worker, page: Page, shots: Shots
) -> dict[str, Any]:
    """Pay with the 3-D Secure card: processing, then (the worker running) on to the challenge page."""
    await fill_card(page, THREE_DS)
    await page.get_by_role("button", name="Pay 25.00 BRL").click()
    await see_processing(page, shots)
    async with worker.running():
        await see_challenge(page, shots)
    [payment] = await payments_of(api, merchant)
    assert (payment["status"], payment["next_action"]["type"]) == ("requires_action", "redirect_to_url")
    assert payment["next_action"]["url"] == page.url
    assert (await session_now(api, merchant, session))["payment"] == payment["id"]
    return payment


async def test_three_d_secure_approved_and_tender_looks_it_up(
    api: Any,
    container: Any,
    merchant: Any,
    tender_url: str,
    shop: Shop,
    worker: Worker,
    simulator: Simulator,
    page: Page,
    shots: Shots,
) -> None:
    session = await open_session(api, merchant, shop, "ord_3ds_ok")
    await simulator.attach(page)
    await open_form(page, session, merchant, shots)
    payment = await challenged(api, merchant, session, worker, page, shots)

    async def looked_up() -> None:  # no notification comes: the worker's look-up time has come
        await make_due(container, payment["id"])
        await wait_for_payment(api, merchant, payment["id"], "succeeded")

    simulator.before_return = looked_up
    async with worker.running():
        await page.get_by_role("button", name="Approve").click()
        await lands_at_the_shop(page, shop, session, "ord_3ds_ok", shots)
    assert (await paid_once(api, merchant, session, "succeeded"))["id"] == payment["id"]


async def test_three_d_secure_declined_then_another_card(
    api: Any,
    container: Any,
    merchant: Any,
    tender_url: str,
    simulator_url: str,
    shop: Shop,
    worker: Worker,
    simulator: Simulator,
    page: Page,
    shots: Shots,
) -> None:
    session = await open_session(api, merchant, shop, "ord_3ds_no")
    await simulator.attach(page)
    await open_form(page, session, merchant, shots)
    payment = await challenged(api, merchant, session, worker, page, shots)

    async def notified() -> None:  # the simulator's signed notification reaches Tender first
        body, headers = await notification_for(simulator_url, (await attempt_of(container, payment["id"]))["id"])
        applied = await api.post("/webhooks/simulator", content=body, headers=headers)
        assert applied.status_code == 200 and applied.json()["outcome"] == "applied", applied.text

    simulator.before_return = notified
    await page.get_by_role("button", name="Decline").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_have_text("Your card was declined. Try another card.")
    await see_form(page, session, merchant, shots, "declined by the bank, the form again")
    failed = (await payments_of(api, merchant))[0]
    assert (failed["id"], failed["status"], failed["failure_code"]) == (
        payment["id"],
        "failed",
        "authentication_failed",
    )
    await expect(alert).not_to_contain_text(failed["failure_message"])

    await fill_card(page, GOOD)
    await page.get_by_role("button", name="Pay 25.00 BRL").click()
    await see_processing(page, shots)
    async with worker.running():
        await lands_at_the_shop(page, shop, session, "ord_3ds_no", shots)
    await paid_once(api, merchant, session, "failed", "succeeded")


async def test_three_d_secure_back_before_tender_knows_the_outcome(
    api: Any,
    container: Any,
    merchant: Any,
    tender_url: str,
    shop: Shop,
    worker: Worker,
    simulator: Simulator,
    page: Page,
    shots: Shots,
) -> None:
    """The usual race in production: the simulator answers the shopper (303 to the checkout page) and sends
    its notification at the same time; here the browser always wins, and Tender learns it by a look-up."""
    session = await open_session(api, merchant, shop, "ord_3ds_early")
    await simulator.attach(page)
    await open_form(page, session, merchant, shots)
    payment = await challenged(api, merchant, session, worker, page, shots)
    back = asyncio.get_running_loop().create_future()
    page.on("framenavigated", lambda f: f.url.startswith(session["url"]) and not back.done() and back.set_result(None))
    await page.get_by_role("button", name="Approve").click()
    await asyncio.wait_for(back, TIMEOUT_MS / 1000)  # the browser came back to the checkout page
    await page.wait_for_load_state()
    await shots.shot(page, "back from the bank")
    async with worker.running():
        await make_due(container, payment["id"])  # harmless if the page already asked for a look-up
        await wait_for_payment(api, merchant, payment["id"], "succeeded")
        await shots.shot(page, "tender knows")
        await expect(page.get_by_role("heading", name="Payment successful")).to_be_visible()
    await lands_at_the_shop(page, shop, session, "ord_3ds_early", shots)


async def test_cancel_goes_back_to_the_shop(
    api: Any, merchant: Any, tender_url: str, shop: Shop, page: Page, shots: Shots
) -> None:
    session = await open_session(api, merchant, shop, "ord_cancel")
    await open_form(page, session, merchant, shots)
    await page.get_by_role("link", name=f"Cancel and return to {merchant.merchant.name}").click()
    await expect(page).to_have_url(f"{shop.url}/cart?order=ord_cancel")
    await expect(page.get_by_role("heading", name="Back at the shop")).to_be_visible()
    assert shop.visits == [("/cart", {"order": "ord_cancel"})]
    await shots.shot(page, "back in the cart")
    assert await payments_of(api, merchant) == []
    assert (await session_now(api, merchant, session))["status"] == "open"  # the shopper may still come back


async def expire_now(container: Any, session: dict[str, Any]) -> None:
    """The session's time is up and the worker's expiry pump has run."""
    async with container.db.connection() as conn:
        await conn.execute(
            "UPDATE checkout_sessions SET expires_at = now() - interval '1 s', next_run_at = now() WHERE id = %s",
            (session["id"],),
        )
    await ExpiryPump(container.db).run_batch(100)


async def see_expired(page: Page, merchant: Any, shop: Shop, shots: Shots, step: str) -> None:
    await expect(page.get_by_role("heading", name="This checkout has expired")).to_be_visible()
    await expect(page.get_by_text("Nothing was charged.")).to_be_visible()
    await expect(page.locator("form, input, button")).to_have_count(0)  # nothing to pay with
    await expect(page.get_by_role("link", name=f"Return to {merchant.merchant.name}")).to_have_attribute(
        "href", f"{shop.url}/cart?order=ord_late"
    )
    await shots.shot(page, step)


async def test_an_expired_session_says_so_and_takes_no_payment(
    api: Any, container: Any, merchant: Any, tender_url: str, shop: Shop, page: Page, shots: Shots
) -> None:
    session = await open_session(api, merchant, shop, "ord_late", expires_in=60)
    await open_form(page, session, merchant, shots)
    await fill_card(page, GOOD)
    await expire_now(container, session)  # while the shopper was typing
    await page.get_by_role("button", name="Pay 25.00 BRL").click()
    await see_expired(page, merchant, shop, shots, "pay after expiry")

    response = await page.goto(session["url"])  # and coming back later
    assert response is not None and response.status == 410
    await see_expired(page, merchant, shop, shots, "expired page")
    # Nor does a form post made by hand (the browser's own request context, so its cookies and all).
    post = await page.request.post(
        session["url"] + "/pay", form={"number": GOOD, "expiry": "10/30", "cvc": "123", "holder_name": "Leia"}
    )
    assert post.status == 410
    assert await payments_of(api, merchant) == []
    now = await session_now(api, merchant, session)
    assert (now["status"], now["payment"]) == ("expired", None)

    await page.get_by_role("link", name=f"Return to {merchant.merchant.name}").click()
    await expect(page).to_have_url(f"{shop.url}/cart?order=ord_late")
    await shots.shot(page, "back in the cart")


async def test_a_double_click_on_pay_makes_one_payment(
    api: Any, merchant: Any, tender_url: str, shop: Shop, worker: Worker, page: Page, shots: Shots
) -> None:
    session = await open_session(api, merchant, shop, "ord_twice")
    posts: list[str] = []
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    await open_form(page, session, merchant, shots)
    await fill_card(page, GOOD)
    await page.get_by_role("button", name="Pay 25.00 BRL").dblclick()
    await see_processing(page, shots)
    assert posts == [session["url"] + "/pay"]  # the page sends the form once
    async with worker.running():
        await lands_at_the_shop(page, shop, session, "ord_twice", shots)
    await paid_once(api, merchant, session, "succeeded")


async def test_keyboard_only(
    api: Any, merchant: Any, tender_url: str, shop: Shop, worker: Worker, page: Page, shots: Shots
) -> None:
    session = await open_session(api, merchant, shop, "ord_keys")
    await open_form(page, session, merchant, shots)
    # Tab reaches every field in order, each by its label and visibly focused; typing fills it in.
    for label, text in (
        ("Card number", "4242 4242 4242 4242"),
        ("Expiry (MM/YY)", "10/30"),
        ("Security code", "123"),
        ("Name on card", "Leia Organa"),
    ):
        await page.keyboard.press("Tab")
        field = page.get_by_label(label, exact=True)
        await expect(field).to_be_focused()
        assert await field.evaluate("e => e.matches(':focus-visible')"), label
        await page.keyboard.type(text)
    await page.keyboard.press("Tab")
    pay = page.get_by_role("button", name="Pay 25.00 BRL")
    await expect(pay).to_be_focused()
    await shots.shot(page, "pay focused")
    await page.keyboard.press("Enter")
    await see_processing(page, shots)
    async with worker.running():
        await lands_at_the_shop(page, shop, session, "ord_keys", shots)
    await paid_once(api, merchant, session, "succeeded")


async def test_the_hints_while_typing(
    api: Any, merchant: Any, tender_url: str, shop: Shop, page: Page, shots: Shots
) -> None:
    session = await open_session(api, merchant, shop, "ord_hints")
    await open_form(page, session, merchant, shots)
    number, number_hint = page.get_by_label("Card number"), page.locator("#number-hint")
    expiry, expiry_hint = page.get_by_label("Expiry (MM/YY)"), page.locator("#expiry-hint")

    await number.press_sequentially("4242 4242 4242 4241")  # a typo: the Luhn check fails
    await expect(number_hint).to_have_text("This card number doesn't look right.")
    await expect(number_hint).to_have_class("hint bad")
    await shots.shot(page, "luhn hint")
    await number.clear()
    await number.press_sequentially("4242 4242 4242 4242")
    await expect(number_hint).to_have_text("VISA")
    await expect(number_hint).to_have_class("hint")
    await shots.shot(page, "visa")
    await number.clear()
    await number.press_sequentially("5555 5555 5555 4444")
    await expect(number_hint).to_have_text("MASTERCARD")

    await expiry.press_sequentially("13/30")
    await expect(expiry_hint).to_have_text("Month 01 to 12")
    await expiry.clear()
    await expiry.press_sequentially("01/20")
    await expect(expiry_hint).to_have_text("This card has expired.")
    await expect(expiry_hint).to_have_class("hint bad")
    await shots.shot(page, "expiry hint")
    await expiry.clear()
    await expiry.press_sequentially("10/30")
    await expect(expiry_hint).to_have_text("")

    # The hints do not stop a submit: the server checks the card and names the field.
    await number.clear()
    await number.press_sequentially("4242 4242 4242 4241")
    await page.get_by_label("Security code").fill("123")
    await page.get_by_role("button", name="Pay 25.00 BRL").click()
    await expect(page.get_by_role("alert")).to_contain_text(re.compile("card number", re.I))
    await expect(number).to_have_attribute("aria-invalid", "true")
    await expect(number).to_be_focused()
    await expect(number).to_have_value("")  # never sent back
    await expect(expiry).to_have_value("10/30")
    await shots.shot(page, "the server names the field")
    assert await payments_of(api, merchant) == []


async def test_without_javascript(
    api: Any,
    merchant: Any,
    tender_url: str,
    shop: Shop,
    worker: Worker,
    no_script_page: Page,
    shots: Shots,
) -> None:
    page = no_script_page
    session = await open_session(api, merchant, shop, "ord_nojs")
    loads: list[str] = []
    page.on("request", lambda r: r.url == session["url"] and r.method == "GET" and loads.append(r.url))
    await open_form(page, session, merchant, shots)
    await page.get_by_label("Card number").press_sequentially("4242 4242 4242 4241")
    await expect(page.locator("#number-hint")).to_have_text("")  # no script, no hints
    await fill_card(page, GOOD)
    await page.get_by_role("button", name="Pay 25.00 BRL").click()  # a plain form post
    await see_processing(page, shots)
    seen = len(loads)
    for _ in range(int(TIMEOUT_MS / 100)):  # the processing view refreshes itself (meta refresh, 2 s)
        if len(loads) > seen:
            break
        await asyncio.sleep(0.1)
    assert len(loads) > seen, "the processing view did not refresh itself"
    await see_processing(page, shots)
    async with worker.running():
        await lands_at_the_shop(page, shop, session, "ord_nojs", shots)
    await paid_once(api, merchant, session, "succeeded")
