"""The simulator's 3-D Secure challenge page as a shopper meets it, in headless Chromium.

A 3-D Secure payment (real PostgreSQL, the API in process, the payment pump) ends in `requires_action`;
the browser opens `next_action.url`, the shopper approves or declines, the simulator sends the browser on to
`return_url` (a small shop page served here, which records what it was given), and Tender learns the outcome
by a look-up or a notification, as the API then shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.support.browser import Shots
from tests.support.payments import THREE_DS, attempt_of, authorizer, drain, get, make_due, notification_for, pay
from tests.support.serve import serve

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SHOP_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>'
    "<body><h1>Back at the shop</h1><p>Thank you.</p></body></html>"
)


class Shop:
    """The merchant's site: the page a shopper returns to, and every query string it was opened with."""

    def __init__(self) -> None:
        self.visits: list[dict[str, str]] = []
        self.url = ""

    async def back(self, request: Request) -> HTMLResponse:
        self.visits.append(dict(request.query_params))
        return HTMLResponse(SHOP_PAGE)


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    s = Shop()
    async with serve(Starlette(routes=[Route("/back", s.back)])) as url:
        s.url = url
        yield s


async def challenged_payment(api: Any, container: Any, merchant: Any, shop: Shop, order: str) -> dict[str, Any]:
    created = await pay(api, merchant, THREE_DS, return_url=f"{shop.url}/back?order={order}")
    await drain(authorizer(container))
    p = await get(api, merchant, created["id"])
    assert p["status"] == "requires_action"
    assert p["next_action"]["type"] == "redirect_to_url"
    return p


def challenge_url(payment: dict[str, Any], simulator_url: str) -> str:
    """The tests' simulator calls itself http://simulator.test; the browser reaches it on its loopback port."""
    url = httpx.URL(payment["next_action"]["url"])
    assert url.host == "simulator.test"
    return str(httpx.URL(simulator_url).copy_with(path=url.path, query=url.query or None))


async def see_challenge(page: Page, url: str, shots: Shots) -> None:
    response = await page.goto(url)
    assert response is not None and response.status == 200
    await expect(page).to_have_title("3-D Secure challenge")
    await expect(page.get_by_role("heading", name="3-D Secure challenge")).to_be_visible()
    await expect(page.locator("#amount")).to_have_text("25.00 BRL")
    await expect(page.get_by_text("ending in 3184")).to_be_visible()
    await expect(page.get_by_role("button", name="Approve")).to_be_enabled()
    await expect(page.get_by_role("button", name="Decline")).to_be_enabled()
    await shots.shot(page, "challenge")


async def lands_back_at_the_shop(page: Page, shop: Shop, order: str, shots: Shots) -> None:
    await expect(page).to_have_url(f"{shop.url}/back?order={order}")
    await expect(page.get_by_role("heading", name="Back at the shop")).to_be_visible()
    assert shop.visits == [{"order": order}]
    await shots.shot(page, "back at the shop")


async def test_approve_on_a_phone_and_the_lookup_finds_it(
    api: Any, container: Any, merchant: Any, simulator_url: str, shop: Shop, phone_page: Page, shots: Shots
) -> None:
    page = phone_page
    p = await challenged_payment(api, container, merchant, shop, "ord_approve")
    await see_challenge(page, challenge_url(p, simulator_url), shots)
    # The page fits a phone: nothing wider than the screen, both buttons on it.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    for name in ("Approve", "Decline"):
        box = await page.get_by_role("button", name=name).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390

    await page.get_by_role("button", name="Approve").tap()
    await lands_back_at_the_shop(page, shop, "ord_approve", shots)

    assert (await get(api, merchant, p["id"]))["status"] == "requires_action"  # nobody has told Tender yet
    await make_due(container, p["id"])  # no notification comes: the worker's look-up time has come
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["next_action"], done["amount_captured"]) == ("succeeded", None, 2500)
    assert (done["failure_code"], done["decline_code"]) == (None, None)

    # Back on the challenge page (the shopper's back button): it says it is done and offers no buttons.
    await page.goto(challenge_url(p, simulator_url))
    await expect(page.locator("#status")).to_have_text("This authorization is approved.")
    await expect(page.get_by_role("button")).to_have_count(0)
    await shots.shot(page, "challenge again")


async def test_decline_with_the_keyboard_only_and_a_notification_tells_tender(
    api: Any, container: Any, merchant: Any, simulator_url: str, shop: Shop, page: Page, shots: Shots
) -> None:
    p = await challenged_payment(api, container, merchant, shop, "ord_decline")
    await see_challenge(page, challenge_url(p, simulator_url), shots)

    # No mouse: Tab reaches Approve first, then Decline, each visibly focused; Enter submits.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Approve")).to_be_focused()
    await page.keyboard.press("Tab")
    decline = page.get_by_role("button", name="Decline")
    await expect(decline).to_be_focused()
    assert await decline.evaluate("b => b.matches(':focus-visible')")
    await shots.shot(page, "decline focused")
    await page.keyboard.press("Enter")
    await lands_back_at_the_shop(page, shop, "ord_decline", shots)

    body, headers = await notification_for(simulator_url, (await attempt_of(container, p["id"]))["id"])
    applied = await api.post("/webhooks/simulator", content=body, headers=headers)
    assert applied.status_code == 200 and applied.json()["outcome"] == "applied"
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["next_action"], done["amount_captured"]) == ("failed", None, 0)
    assert (done["failure_code"], done["decline_code"]) == ("authentication_failed", None)
    assert done["failure_message"]
