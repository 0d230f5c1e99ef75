"""The dashboard's merchant pages in headless Chromium: searching payments, a refund from a payment's page
through its confirmation step, the balance chart (30 and 90 days, and on a 375 px phone), and resending a
webhook from an endpoint's delivery log. A screenshot per step under test-artifacts/dashboard/<test name>/.

Payments are made through the API and the payment pump; the refund pump runs while the browser waits.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tender.services.merchants import NewMerchant, create_merchant
from tests.support.browser import ARTIFACTS, Shots, folder_of
from tests.support.dashboard_client import PASSWORD, new_user
from tests.support.money import query
from tests.support.payments import authorizer, drain, pay
from tests.support.refunds import drain_refunds
from tests.support.refunds import pump as refund_pump
from tests.support.webhooks import delete_made_endpoints, make_endpoint

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PHONE: dict[str, Any] = {
    "viewport": {"width": 375, "height": 812},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
DASHBOARD_ARTIFACTS = ARTIFACTS.parent / "dashboard"


@pytest.fixture
def dash_shots(request: pytest.FixtureRequest) -> Shots:
    folder = DASHBOARD_ARTIFACTS / folder_of(request.node).name
    for old in folder.glob("*.png"):
        old.unlink()
    return Shots(folder)


async def shop_with_payments(api: Any, container: Any) -> tuple[NewMerchant, str, list[dict[str, Any]]]:
    """A merchant with a few settled-in-the-books payments (credit, debit, a decline) and a dashboard user."""
    shop = await create_merchant(container.db, f"Browser Shop {uuid.uuid4().hex[:4]}")
    made = [
        await pay(api, shop, "4242424242424242", amount=2500, reference=f"order-{uuid.uuid4().hex[:6]}"),
        await pay(api, shop, "4000056655665556", amount=12990, reference=f"order-{uuid.uuid4().hex[:6]}"),
        await pay(api, shop, "4000000000000002", amount=5000, reference=f"order-{uuid.uuid4().hex[:6]}"),
        await pay(api, shop, "5555555555554444", amount=4900, reference=f"order-{uuid.uuid4().hex[:6]}"),
    ]
    await drain(authorizer(container))
    return shop, await new_user(container, shop.merchant.id), made


async def sign_in(page: Page, base: str, path: str, email: str) -> None:
    await page.goto(f"{base}{path}")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(f"{base}{path}")


def result_rows(page: Page) -> Any:
    return page.get_by_test_id("payments").locator("tbody tr")


async def test_search_then_refund_from_the_payment_page(
    api: Any, container: Any, tender_url: str, page: Page, dash_shots: Shots
) -> None:
    _shop, email, made = await shop_with_payments(api, container)
    visa, _debit, declined, master = made
    await sign_in(page, tender_url, "/dashboard/payments", email)
    await expect(page.get_by_role("heading", name="Payments", level=1)).to_be_visible()
    await expect(result_rows(page)).to_have_count(4)
    await dash_shots.shot(page, "payments newest first")

    # By last4, then by status, then by reference.
    await page.get_by_label("Payment id, reference, card last 4").fill("4444")
    await page.get_by_role("button", name="Search").click()
    await expect(result_rows(page)).to_have_count(1)
    await expect(result_rows(page).first).to_contain_text(master["id"])
    await dash_shots.shot(page, "search by last4")
    await page.get_by_label("Payment id, reference, card last 4").fill("")
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Search").click()
    await expect(result_rows(page)).to_have_count(1)
    await expect(result_rows(page).first).to_contain_text(declined["id"])
    await dash_shots.shot(page, "search by status")
    await page.get_by_label("Status").select_option("")
    await page.get_by_label("Payment id, reference, card last 4").fill(visa["reference"])
    await page.get_by_role("button", name="Search").click()
    await expect(result_rows(page)).to_have_count(1)
    await dash_shots.shot(page, "search by reference")

    # The payment's page: amounts, card, timeline, payable.
    await page.get_by_role("link", name=visa["id"]).click()
    await expect(page.get_by_test_id("payment-id")).to_have_text(visa["id"])
    await expect(page.get_by_test_id("status")).to_have_text("succeeded")
    await expect(page.get_by_test_id("timeline")).to_contain_text("Authorization at simulator")
    await expect(page.get_by_test_id("timeline")).to_contain_text("payment.succeeded")
    await expect(page.get_by_test_id("payables")).to_contain_text("23.75 BRL")
    await dash_shots.shot(page, "the payment")

    # A partial refund: the amount, then the confirmation step, then the payment again.
    await page.get_by_label("Amount to refund").fill("5.00")
    await page.get_by_test_id("refund-button").click()
    await expect(page.get_by_role("heading", name="Refund the payment")).to_be_visible()
    await expect(page.get_by_test_id("confirm-what")).to_contain_text("Refund 5.00 BRL")
    await dash_shots.shot(page, "refund confirmation")
    # A double click sends the form twice: its Idempotency-Key makes the second the same refund.
    await page.get_by_test_id("confirm-button").dblclick()
    await expect(page.get_by_test_id("notice")).to_contain_text("Refund requested")
    await dash_shots.shot(page, "refund requested")
    refunds = await query(container, "SELECT amount FROM refunds WHERE payment_id = %s", visa["id"])
    assert [r["amount"] for r in refunds] == [500]
    # Back to the confirmation page and confirming again: the same key (the payment page's nonce), the same refund.
    await page.go_back()
    await expect(page.get_by_test_id("confirm-what")).to_contain_text("Refund 5.00 BRL")
    await page.get_by_test_id("confirm-button").click()
    await expect(page.get_by_test_id("notice")).to_contain_text("Refund requested")
    refunds = await query(container, "SELECT amount FROM refunds WHERE payment_id = %s", visa["id"])
    assert [r["amount"] for r in refunds] == [500]

    await drain_refunds(refund_pump(container))
    await page.reload()
    await expect(page.get_by_test_id("refunded")).to_have_text("5.00 BRL")
    await expect(page.get_by_test_id("timeline")).to_contain_text("refund.succeeded")
    await expect(page.get_by_test_id("refunds")).to_contain_text("succeeded")
    await dash_shots.shot(page, "refund succeeded")

    # More than is left is refused as the API refuses it, naming the field.
    await page.get_by_label("Amount to refund").fill("30.00")
    await page.get_by_test_id("refund-button").click()
    await page.get_by_test_id("confirm-button").click()
    await expect(page.get_by_test_id("error")).to_contain_text("amount_too_large")
    await expect(page.get_by_test_id("error")).to_contain_text("amount")
    await dash_shots.shot(page, "refund refused")


async def test_balance_chart_over_30_and_90_days(
    api: Any, container: Any, tender_url: str, page: Page, browser: Browser, dash_shots: Shots
) -> None:
    _shop, email, _made = await shop_with_payments(api, container)
    await sign_in(page, tender_url, "/dashboard/balance", email)
    now = page.get_by_test_id("balance-now")
    # Credit cards wait for their funds (pending), the debit card is available at once.
    await expect(now).to_contain_text("70.30 BRL")  # 2375 + 4655 pending
    await expect(now).to_contain_text("126.00 BRL")  # 12990 - 3 %
    chart = page.get_by_role("img", name="Balance over 30 days (BRL)")
    await expect(chart).to_be_visible()
    table = page.get_by_role("region", name="Balance over 30 days (BRL): the numbers")
    await expect(table.get_by_role("row")).to_have_count(31)
    today = table.get_by_role("row").nth(1)  # after the header: the newest day first
    await expect(today.get_by_role("cell")).to_have_text(["70.30 BRL", "126.00 BRL"])
    await expect(table.get_by_role("row").last.get_by_role("cell")).to_have_text(["0.00 BRL", "0.00 BRL"])
    await dash_shots.shot(page, "balance 30 days")

    await page.get_by_role("link", name="90 days").click()
    await expect(page.get_by_role("img", name="Balance over 90 days (BRL)")).to_be_visible()
    await expect(
        page.get_by_role("region", name="Balance over 90 days (BRL): the numbers").get_by_role("row")
    ).to_have_count(91)
    await dash_shots.shot(page, "balance 90 days")

    await page.get_by_role("link", name="Payables", exact=True).click()
    await expect(page.get_by_test_id("due-days")).to_contain_text("70.30 BRL")
    await dash_shots.shot(page, "payables by due date")

    context = await browser.new_context(**PHONE)
    try:
        phone = await context.new_page()
        await sign_in(phone, tender_url, "/dashboard/balance", email)
        await expect(phone.get_by_role("img", name="Balance over 30 days (BRL)")).to_be_visible()
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"horizontal scroll: the page is {width}px wide"
        await dash_shots.shot(phone, "balance on a phone")
    finally:
        await context.close()


async def test_resend_a_webhook_from_the_delivery_log(
    api: Any, container: Any, tender_url: str, page: Page, dash_shots: Shots
) -> None:
    shop, email, _ = await shop_with_payments(api, container)
    endpoint = await make_endpoint(container, shop, "http://127.0.0.1:9/hooks")
    try:
        made = await pay(api, shop, "4242424242424242", amount=1500)
        await drain(authorizer(container))
        event = (await query(container, "SELECT id FROM events WHERE object_id = %s ORDER BY id LIMIT 1", made["id"]))[
            0
        ]
        # Stand in for the delivery pump having given up on it (the receiver answered 500 every time).
        await query(
            container,
            "UPDATE webhook_deliveries SET status = 'failed', next_run_at = NULL, attempts = 12,"
            " last_status_code = 500, last_attempt_at = now() WHERE event_id = %s RETURNING id",
            event["id"],
        )
        await sign_in(page, tender_url, "/dashboard/webhooks", email)
        await expect(page.get_by_test_id("endpoints")).to_contain_text("http://127.0.0.1:9/hooks")
        await dash_shots.shot(page, "webhook endpoints")
        await page.get_by_role("link", name=endpoint["id"]).click()
        row = page.get_by_test_id("deliveries").locator("tr", has_text=event["id"])
        await expect(row).to_contain_text("failed")
        await expect(row).to_contain_text("HTTP 500")
        await dash_shots.shot(page, "delivery log")

        await page.get_by_test_id(f"resend-{event['id']}").click()
        await expect(page.get_by_role("heading", name="Resend an event")).to_be_visible()
        await expect(page.get_by_test_id("confirm-what")).to_contain_text(event["id"])
        await dash_shots.shot(page, "resend confirmation")
        await page.get_by_test_id("confirm-button").click()
        await expect(page).to_have_url(re.compile(rf"/dashboard/webhooks/{endpoint['id']}\?done=resend$"))
        await expect(page.get_by_test_id("notice")).to_contain_text("Resend queued")
        await expect(page.get_by_test_id("deliveries").locator("tr", has_text=event["id"])).to_contain_text("pending")
        await dash_shots.shot(page, "resend queued")
        rows = await query(
            container, "SELECT status, next_run_at FROM webhook_deliveries WHERE event_id = %s", event["id"]
        )
        assert rows[0]["status"] == "pending" and rows[0]["next_run_at"] is not None
    finally:
        await delete_made_endpoints(container)
