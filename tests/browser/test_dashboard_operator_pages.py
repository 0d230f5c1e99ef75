"""The dashboard's operator pages in headless Chromium: an operator signs in with the admin key, pauses a
processor with a reason and resumes it, and retries a dead letter, each through its confirmation page, by
clicking as a person would. A screenshot per step under test-artifacts/dashboard/<test name>/.

The dead letter is written straight into the database (work that exhausted its retries takes minutes of
back-off to make for real): a payment's authorization, with an id no payment has, so its retry touches
nothing else.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tender.services import processor_health
from tests.support.browser import ARTIFACTS, Shots, folder_of

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DASHBOARD_ARTIFACTS = ARTIFACTS.parent / "dashboard"


@pytest.fixture
def dash_shots(request: pytest.FixtureRequest) -> Shots:
    folder = DASHBOARD_ARTIFACTS / folder_of(request.node).name
    for old in folder.glob("*.png"):
        old.unlink()
    return Shots(folder)


async def operator_sign_in(page: Page, base: str, admin_key: str) -> None:
    await page.goto(f"{base}/dashboard/login")
    await page.get_by_text("Operator? Sign in with the admin key").click()
    await page.get_by_label("Admin key").fill(admin_key)
    await page.get_by_role("button", name="Sign in as operator").click()
    await expect(page.get_by_role("heading", name="All merchants", level=1)).to_be_visible()


def nav(page: Page, name: str) -> Any:
    return page.get_by_role("navigation", name="Dashboard").get_by_role("link", name=name, exact=True)


async def test_an_operator_pauses_and_resumes_a_processor(
    container: Any, tender_url: str, page: Page, dash_shots: Shots
) -> None:
    policy = container.settings.circuit_policy
    reason = f"Acquirer maintenance {uuid.uuid4().hex[:4]}"
    try:
        await operator_sign_in(page, tender_url, container.settings.admin_key.get_secret_value())
        await dash_shots.shot(page, "signed in as operator")
        await nav(page, "Processors").click()
        await expect(page.get_by_role("heading", name="Processors", level=1)).to_be_visible()
        await expect(page.get_by_test_id("paused-simulator")).to_have_text("no")
        await dash_shots.shot(page, "processors")
        await page.get_by_test_id("pause-simulator").click()
        await expect(page.get_by_test_id("confirm-what")).to_contain_text("Pause simulator")
        await page.get_by_label("Reason").fill(reason)
        await dash_shots.shot(page, "pause confirmation")
        await page.get_by_role("button", name="Pause").click()
        await expect(page.get_by_test_id("notice")).to_have_text("Processor paused.")
        await expect(page.get_by_test_id("paused-simulator")).to_contain_text(reason)
        await expect(page.get_by_test_id("operator-events")).to_contain_text("processor.paused")
        assert (await processor_health.statuses(container.db, policy, ["simulator"]))[0].paused
        await dash_shots.shot(page, "paused")
        await page.get_by_test_id("resume-simulator").click()
        await expect(page.get_by_test_id("confirm-what")).to_contain_text("Resume simulator")
        await dash_shots.shot(page, "resume confirmation")
        await page.get_by_role("button", name="Resume").click()
        await expect(page.get_by_test_id("notice")).to_have_text("Processor resumed.")
        await expect(page.get_by_test_id("paused-simulator")).to_have_text("no")
        await expect(page.get_by_test_id("operator-events")).to_contain_text("processor.resumed")
        assert not (await processor_health.statuses(container.db, policy, ["simulator"]))[0].paused
        await dash_shots.shot(page, "resumed")
    finally:
        await processor_health.set_paused(container.db, policy, "simulator", paused=False)


async def test_an_operator_retries_a_dead_letter(
    container: Any, tender_url: str, page: Page, dash_shots: Shots
) -> None:
    letter = f"dl_{uuid.uuid4().hex}"
    async with container.db.connection() as conn:
        await conn.execute(
            "INSERT INTO dead_letters (id, kind, object_id, operation, tries, last_error, processor)"
            " VALUES (%s, 'payment', %s, 'authorize', 8, 'simulator: connection refused', 'simulator')",
            (letter, f"pay_{uuid.uuid4().hex[:26]}"),
        )
    try:
        await operator_sign_in(page, tender_url, container.settings.admin_key.get_secret_value())
        await nav(page, "Dead letters").click()
        await page.get_by_label("Status").select_option("open")
        await page.get_by_role("button", name="Show").click()
        row = page.get_by_role("row").filter(has_text=letter)
        await expect(row).to_contain_text("simulator: connection refused")
        await dash_shots.shot(page, "open dead letters")
        await row.get_by_role("link", name=letter).click()
        await expect(page.get_by_role("heading", name=f"Dead letter {letter}", level=1)).to_be_visible()
        await expect(page.get_by_test_id("dead-letter-status")).to_have_text("open")
        await dash_shots.shot(page, "the dead letter")
        await page.get_by_test_id("retry-link").click()
        await expect(page.get_by_test_id("confirm-what")).to_contain_text("fresh set of tries")
        await dash_shots.shot(page, "retry confirmation")
        await page.get_by_role("button", name="Retry").click()
        await expect(page.get_by_test_id("notice")).to_contain_text("Retry queued")
        await expect(page.get_by_test_id("dead-letter-status")).to_have_text("retried")
        await dash_shots.shot(page, "retried")
        # The list shows it among the retried ones (a double submit acting once is tested over HTTP).
        await page.get_by_role("link", name="← Dead letters").click()
        await page.get_by_label("Status").select_option("retried")
        await page.get_by_role("button", name="Show").click()
        await expect(page.get_by_role("row").filter(has_text=letter)).to_contain_text("retried")
        await dash_shots.shot(page, "retried dead letters")
        async with container.db.connection() as conn:
            cur = await conn.execute("SELECT status FROM dead_letters WHERE id = %s", (letter,))
            assert (await cur.fetchone())["status"] == "retried"
    finally:
        async with container.db.connection() as conn:
            await conn.execute("UPDATE dead_letters SET status = 'resolved' WHERE id = %s", (letter,))


async def test_an_operator_creates_a_merchant_and_sets_its_fee_plan(
    container: Any, tender_url: str, page: Page, dash_shots: Shots
) -> None:
    name = f"Operator Shop {uuid.uuid4().hex[:4]}"
    await operator_sign_in(page, tender_url, container.settings.admin_key.get_secret_value())
    await nav(page, "Merchants").click()
    await page.get_by_test_id("new-merchant").click()
    await page.get_by_label("Name").fill(name)
    await dash_shots.shot(page, "new merchant")
    await page.get_by_role("button", name="Create the merchant").click()
    await expect(page.get_by_test_id("secret-1")).to_contain_text("sk_test_")
    await expect(page.get_by_test_id("secret-2")).to_contain_text("pk_test_")
    await dash_shots.shot(page, "keys shown once")
    await page.get_by_role("link", name="Done: to the merchant").click()
    await expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    await page.get_by_test_id("edit-fee-plan").click()
    plan = (
        '{"rules": [{"payment_method": "*", "funding": "*", "percent": "2.99999", "fixed": {"BRL": 40},'
        ' "delay_days": 30, "starts": "waiting_funds"}]}'
    )
    await page.get_by_label("Rules (JSON)").fill(plan)
    await page.get_by_test_id("review-button").click()
    await expect(page.get_by_test_id("error")).to_contain_text("rules[0].percent")
    await expect(page.get_by_label("Rules (JSON)")).to_have_attribute("aria-invalid", "true")
    await dash_shots.shot(page, "a percent with too many places, named")
    await page.get_by_label("Rules (JSON)").fill(plan.replace("2.99999", "2.99"))
    await page.get_by_test_id("review-button").click()
    await expect(page.get_by_test_id("fee-rules")).to_contain_text("2.99%")
    await expect(page.get_by_test_id("fee-rules")).to_contain_text("0.40 BRL")
    await dash_shots.shot(page, "review")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_test_id("notice")).to_contain_text("Fee plan saved")
    await expect(page.get_by_test_id("fee-rules")).to_contain_text("2.99%")
    await dash_shots.shot(page, "saved")
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT f.rules FROM fee_plans f JOIN merchants m ON m.id = f.merchant_id WHERE m.name = %s", (name,)
        )
        assert (await cur.fetchone())["rules"][0]["percent"] == "2.99"


async def test_the_operator_pages_fit_a_phone(
    browser: Any, container: Any, tender_url: str, request: pytest.FixtureRequest, dash_shots: Shots
) -> None:
    context = await browser.new_context(
        viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    try:
        page = await context.new_page()
        await operator_sign_in(page, tender_url, container.settings.admin_key.get_secret_value())
        for path, heading in [
            ("merchants", "Merchants"), ("dead-letters", "Dead letters"), ("processors", "Processors"),
            ("ledger", "Ledger check"), ("reconciliations", "Reconciliation"),
        ]:  # fmt: skip
            await page.goto(f"{tender_url}/dashboard/operator/{path}")
            await expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"{path}: horizontal scroll, the page is {width}px wide"
            await dash_shots.shot(page, f"phone {path}")
    finally:
        await context.close()
