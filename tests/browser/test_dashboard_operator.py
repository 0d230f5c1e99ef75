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
