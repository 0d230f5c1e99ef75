"""Cross-merchant denial in headless Chromium: a merchant's user signed in to the dashboard sees none of another
merchant's objects, whether searched for or typed into the address bar (a payment's page, its refund step, a
customer), and each is the same "Not found" page as an id that does not exist. A screenshot per step under
test-artifacts/dashboard/<test name>/. (Every page and action over HTTP: tests/integration/test_dashboard_*.py.)"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tender.services.merchants import create_merchant
from tests.support.browser import ARTIFACTS, Shots, folder_of
from tests.support.dashboard_client import PASSWORD, new_user
from tests.support.payments import authorizer, drain, pay

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    folder = ARTIFACTS.parent / "dashboard" / folder_of(request.node).name
    for old in folder.glob("*.png"):
        old.unlink()
    return Shots(folder)


async def test_a_user_sees_nothing_of_another_merchant(
    api: Any, container: Any, tender_url: str, page: Page, shots: Shots
) -> None:
    mine = await create_merchant(container.db, f"Mine {uuid.uuid4().hex[:4]}")
    theirs = await create_merchant(container.db, f"Theirs {uuid.uuid4().hex[:4]}")
    own = await pay(api, mine, "4242424242424242", amount=1500, reference=f"mine-{uuid.uuid4().hex[:6]}")
    other = await pay(api, theirs, "4242424242424242", amount=7700, reference=f"theirs-{uuid.uuid4().hex[:6]}")
    customer = await api.post(
        "/v1/customers",
        json={"email": "shopper@theirs.example"},
        headers={"Authorization": f"Bearer {theirs.secret_key}"},
    )
    assert customer.status_code == 201, customer.text
    await drain(authorizer(container))
    email = await new_user(container, mine.merchant.id)

    await page.goto(f"{tender_url}/dashboard/payments")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    rows = page.get_by_test_id("payments").locator("tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(own["id"])
    await shots.shot(page, "only my payment")

    # Searching for the other merchant's payment by its id or reference finds nothing.
    for term in (other["id"], other["reference"]):
        await page.get_by_label("Payment id, reference, card last 4").fill(term)
        await page.get_by_role("button", name="Search").click()
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_text("No payment matches.")
    await shots.shot(page, "their payment not found by search")

    # Typed into the address bar: the same page as an id that does not exist, and a 404.
    for path in (
        f"/dashboard/payments/{other['id']}",
        f"/dashboard/payments/{other['id']}/refund",
        f"/dashboard/customers/{customer.json()['id']}",
        "/dashboard/payments/pay_doesnotexist",
    ):
        answer = await page.goto(f"{tender_url}{path}")
        assert answer is not None and answer.status == 404, path
        await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        await expect(page.locator("main")).not_to_contain_text(other["id"])
        await expect(page.locator("main")).not_to_contain_text("77.00")
    await shots.shot(page, "their payment is not found")
    assert await page.context.cookies()  # still signed in: denial is not a sign-out
