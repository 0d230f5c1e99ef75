"""The hosted checkout's alternative payment methods in headless Chromium: the shopper picks wallet, net
banking or buy-now-pay-later, is handed off (via the processing view) to the simulator's approval page,
approves or declines there and comes back to the checkout page (`?returned=1`); or pays by UPI and waits on
the page while the collect request is decided.

How Tender learns the outcome varies on purpose: the look-up (coming back to the page asks for one at once;
for UPI, nobody comes back, so the test makes the payment due once the simulator has decided, as the pump's
scheduled look-up would) or the simulator's signed notification, posted to `/webhooks/simulator` just before
the simulator's 303 reaches the browser (the session's simulator notifies nobody by itself). What the shopper
sees is checked against the API: the payment's method and status, its payable, the session.

The app, the shop, the pump and the simulator's routing are the card page's fixtures (tests/browser/conftest.py)
and helpers (tests/support/checkout_page.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tender.simulator import apm
from tender.web.pages import METHOD_NAMES
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
from tests.support.payments import attempt_of, make_due, notification_for, notification_outcomes

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# -- helpers ---------------------------------------------------------------------------------------------


async def to_the_provider(
    api: Any, merchant: Any, session: dict[str, Any], kind: str, worker: Worker, page: Page, shots: Shots
) -> dict[str, Any]:
    """Click the method's button: the processing view, then (the pump running) the provider's approval page."""
    button = page.locator(f"#pay-{kind}")
    await expect(button).to_have_text(METHOD_NAMES[kind])
    await button.click()
    await see_processing(page, shots)
    assert await payments_of(api, merchant) != []  # the payment exists before the pump has sent it
    async with worker.running():
        await expect(page).to_have_url(re.compile(r"^http://simulator\.test/apm/sim_\w+$"), timeout=TIMEOUT_MS)
    await expect(page).to_have_title(f"{apm.NAMES[kind]}: approve payment")
    await expect(page.locator("#summary")).to_have_text(f"Pay 25.00 BRL with {apm.NAMES[kind]}.")
    await expect(page.get_by_role("button", name="Approve")).to_be_enabled()
    await expect(page.get_by_role("button", name="Decline")).to_be_enabled()
    await shots.shot(page, f"{kind} approval page")
    [payment] = await payments_of(api, merchant)
    assert (payment["status"], payment["payment_method"]["type"]) == ("requires_action", kind)
    assert payment["next_action"]["url"] == page.url
    assert payment["return_url"] == session["url"] + "?returned=1"
    assert (await session_now(api, merchant, session))["payment"] == payment["id"]
    return payment


async def notify(api: Any, container: Any, simulator_url: str, payment_id: str) -> None:
    """The simulator's signed notification of the authorization as it is now, applied by Tender."""
    body, headers = await notification_for(simulator_url, (await attempt_of(container, payment_id))["id"])
    applied = await api.post("/webhooks/simulator", content=body, headers=headers)
    assert applied.status_code == 200 and applied.json()["outcome"] == "applied", applied.text


async def learned_by(container: Any, payment_id: str) -> str:
    """How Tender learned the outcome: "notification" if one was applied, else "look-up"."""
    outcomes = await notification_outcomes(container, (await attempt_of(container, payment_id))["id"])
    assert outcomes in ([], ["applied"]), outcomes
    return "notification" if outcomes else "look-up"


async def decide(
    page: Page,
    session: dict[str, Any],
    payment: dict[str, Any],
    decision: str,
    learns: str,
    notified: Callable[[], Awaitable[None]],
    simulator: Simulator,
    shots: Shots,
) -> None:
    """Click Approve or Decline. By notification, Tender knows before the browser is back; by look-up, the
    browser is back first (the pump is not running yet) and waits on the processing view."""
    if learns == "notification":
        simulator.before_return = notified
        await page.get_by_role("button", name=decision).click()
        return
    await page.get_by_role("button", name=decision).click()
    await expect(page).to_have_url(session["url"] + "?returned=1")
    await see_processing(page, shots)
    await expect(page.locator("#back-to-bank")).to_have_attribute("href", payment["next_action"]["url"])


async def owes_the_other_methods_fee(api: Any, merchant: Any, payment: dict[str, Any], kind: str) -> None:
    """The "other methods" default of the fee plan: 2 %, waiting for funds."""
    [payable] = (await api_get(api, merchant, f"/v1/payables?payment={payment['id']}"))["data"]
    assert (payable["amount"], payable["fee"], payable["net"], payable["currency"]) == (2500, 50, 2450, "BRL")
    assert (payable["status"], payable["payment_method"]) == ("waiting_funds", kind)


async def simulator_decided(simulator_url: str, container: Any, payment_id: str) -> str:
    """Wait until the simulator's test UPI address has answered the collect request (upi_delay_ms)."""
    reference = (await attempt_of(container, payment_id))["id"]
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        for _ in range(100):
            status = (await sim.get(f"/v1/authorizations/{reference}")).json()["status"]
            if status != "action_required":
                return str(status)
            await asyncio.sleep(0.1)
    raise AssertionError("the simulator never decided the collect request")


# -- wallet, net banking, buy now pay later --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "learns"), [("wallet", "look-up"), ("netbanking", "notification"), ("bnpl", "look-up")]
)
async def test_approved_at_the_provider(
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
    kind: str,
    learns: str,
) -> None:
    order = f"ord_{kind}_ok"
    session = await open_session(api, merchant, shop, order, payment_method_types=["card", kind])
    await simulator.attach(page)
    await open_form(page, session, merchant, shots)
    payment = await to_the_provider(api, merchant, session, kind, worker, page, shots)

    async def notified() -> None:
        await notify(api, container, simulator_url, payment["id"])

    await decide(page, session, payment, "Approve", learns, notified, simulator, shots)
    async with worker.running():
        await lands_at_the_shop(page, shop, session, order, shots)
    paid = await paid_once(api, merchant, session, "succeeded")
    assert (paid["id"], paid["payment_method"]["type"], paid["amount_captured"]) == (payment["id"], kind, 2500)
    assert await learned_by(container, payment["id"]) == learns
    await owes_the_other_methods_fee(api, merchant, paid, kind)


@pytest.mark.parametrize(
    ("kind", "learns"), [("wallet", "notification"), ("netbanking", "look-up"), ("bnpl", "notification")]
)
async def test_declined_at_the_provider_then_a_card(
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
    kind: str,
    learns: str,
) -> None:
    order = f"ord_{kind}_no"
    session = await open_session(api, merchant, shop, order, payment_method_types=["card", kind])
    await simulator.attach(page)
    await open_form(page, session, merchant, shots)
    payment = await to_the_provider(api, merchant, session, kind, worker, page, shots)

    async def notified() -> None:
        await notify(api, container, simulator_url, payment["id"])

    await decide(page, session, payment, "Decline", learns, notified, simulator, shots)
    alert = page.get_by_role("alert")
    async with worker.running():
        await expect(alert).to_contain_text("Please try again, or choose another way to pay.", timeout=TIMEOUT_MS)
    await see_form(page, session, merchant, shots, "declined, the form again")
    await expect(page.locator(f"#pay-{kind}")).to_be_enabled()  # the method is offered again too
    [failed] = await payments_of(api, merchant)
    assert (failed["id"], failed["status"], failed["payment_method"]["type"]) == (payment["id"], "failed", kind)
    assert (failed["failure_code"], failed["decline_code"]) == ("payment_method_provider_decline", f"{kind}_declined")
    await expect(alert).to_contain_text(failed["failure_message"])
    assert await learned_by(container, payment["id"]) == learns
    assert (await session_now(api, merchant, session))["status"] == "open"
    payables = (await api_get(api, merchant, f"/v1/payables?payment={payment['id']}"))["data"]
    assert payables == []  # nothing captured, nothing owed

    await fill_card(page, GOOD)
    await page.get_by_role("button", name="Pay 25.00 BRL").click()
    await see_processing(page, shots)
    async with worker.running():
        await lands_at_the_shop(page, shop, session, order, shots)
    card = await paid_once(api, merchant, session, "failed", "succeeded")
    assert card["id"] != payment["id"] and card["payment_method"]["type"] == "card"


# -- UPI -------------------------------------------------------------------------------------------------


async def pay_by_upi(page: Page, vpa: str, shots: Shots) -> None:
    field = page.get_by_label("UPI ID")
    await field.fill(vpa)
    await shots.shot(page, "UPI ID filled in")
    await page.get_by_role("button", name=METHOD_NAMES["upi"]).click()


@pytest.mark.parametrize(
    ("vpa", "learns"), [("success@upi", "look-up"), ("failure@upi", "notification")], ids=["success", "failure"]
)
async def test_upi_test_address_decides_while_the_page_waits(
    api: Any,
    container: Any,
    merchant: Any,
    tender_url: str,
    simulator_url: str,
    shop: Shop,
    worker: Worker,
    page: Page,
    shots: Shots,
    vpa: str,
    learns: str,
) -> None:
    order = f"ord_upi_{vpa.partition('@')[0]}"
    session = await open_session(api, merchant, shop, order, payment_method_types=["card", "upi"])
    await open_form(page, session, merchant, shots)
    await pay_by_upi(page, vpa, shots)
    await see_processing(page, shots)
    waiting = page.get_by_text("Approve the payment request in your UPI app.")
    async with worker.running():
        await expect(waiting).to_be_visible(timeout=TIMEOUT_MS)
        await expect(page.locator("#processing")).to_have_attribute("data-status", "requires_action")
        await shots.shot(page, "approve in your UPI app")
        [payment] = await payments_of(api, merchant)
        assert (payment["status"], payment["payment_method"]) == (
            "requires_action",
            {"type": "upi", "upi": {"vpa": vpa}},
        )
        await expect(page.get_by_role("link", name="Open the UPI app")).to_have_attribute(
            "href", payment["next_action"]["url"]
        )
        decided = await simulator_decided(simulator_url, container, payment["id"])
        assert decided == ("approved" if vpa == "success@upi" else "declined")
        await expect(waiting).to_be_visible()  # the UPI app has answered; Tender has not heard yet
        await shots.shot(page, "the UPI app answered, Tender not told yet")
        if learns == "look-up":
            await make_due(container, payment["id"])  # the pump's scheduled look-up has come
        else:
            await notify(api, container, simulator_url, payment["id"])
        if vpa == "success@upi":
            await lands_at_the_shop(page, shop, session, order, shots)
        else:
            await expect(page.get_by_role("alert")).to_contain_text(
                "Please try again, or choose another way to pay.", timeout=TIMEOUT_MS
            )
    assert await learned_by(container, payment["id"]) == learns
    if vpa == "success@upi":
        paid = await paid_once(api, merchant, session, "succeeded")
        assert paid["id"] == payment["id"]
        await owes_the_other_methods_fee(api, merchant, paid, "upi")
        return
    await see_form(page, session, merchant, shots, "declined, the form again")
    await expect(page.get_by_label("UPI ID")).to_be_enabled()
    [failed] = await payments_of(api, merchant)
    assert (failed["status"], failed["failure_code"], failed["decline_code"]) == (
        "failed",
        "payment_method_provider_decline",
        "upi_declined",
    )
    await expect(page.get_by_role("alert")).to_contain_text(failed["failure_message"])
    assert (await session_now(api, merchant, session))["status"] == "open"


@pytest.mark.parametrize("vpa", ["leia.organa", 'leia"><b id="injected">x</b>@upi'], ids=["no-handle", "markup"])
async def test_a_malformed_upi_id_is_named_and_nothing_is_charged(
    api: Any, merchant: Any, tender_url: str, shop: Shop, page: Page, shots: Shots, vpa: str
) -> None:
    session = await open_session(api, merchant, shop, "ord_upi_bad", payment_method_types=["card", "upi"])
    posts: list[str] = []
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    await open_form(page, session, merchant, shots)
    field = page.get_by_label("UPI ID")

    await page.get_by_role("button", name=METHOD_NAMES["upi"]).click()  # empty: the browser's own check stops it
    assert await field.evaluate("e => e.validity.valueMissing")
    await shots.shot(page, "empty UPI ID")
    assert posts == []

    await pay_by_upi(page, vpa, shots)
    alert = page.get_by_role("alert")
    await expect(alert).to_have_text("Enter your UPI ID as name@bank.")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(field).to_be_focused()
    await expect(field).to_have_value(vpa)  # sent back as typed, escaped
    await expect(page.locator("#injected")).to_have_count(0)
    await expect(page.get_by_role("button", name="Pay 25.00 BRL")).to_be_enabled()  # the card form stays
    await shots.shot(page, "the UPI ID named")
    assert posts == [session["url"] + "/pay_method"]
    assert await payments_of(api, merchant) == []
    now = await session_now(api, merchant, session)
    assert (now["status"], now["payment"]) == ("open", None)
