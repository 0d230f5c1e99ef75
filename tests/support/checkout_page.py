"""The hosted checkout page in a browser: the shop the shopper comes back to, the payment pump run while the
browser waits, the simulator's pages forwarded to its loopback port, and the steps a shopper takes (open the
form, fill in a card, see the processing view, land at the shop), each checked against the API."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from playwright.async_api import Page, Route, expect
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse

from tests.support.api import auth
from tests.support.browser import TIMEOUT_MS, Shots
from tests.support.checkout import new_session
from tests.support.payments import authorizer

GOOD = "4242424242424242"
SHOP_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>'
    "<body><h1>Back at the shop</h1></body></html>"
)


class Shop:
    """The merchant's site: the thank-you page and the cart, and every path + query string it was opened with."""

    def __init__(self) -> None:
        self.url = ""
        self.visits: list[tuple[str, dict[str, str]]] = []

    async def page(self, request: StarletteRequest) -> HTMLResponse:
        self.visits.append((request.url.path, dict(request.query_params)))
        return HTMLResponse(SHOP_PAGE)


class Worker:
    """The payment pump, run by the test: `async with worker.running():` while the browser waits."""

    def __init__(self, container: Any) -> None:
        self._authorizer = authorizer(container)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                await self._authorizer.run_batch(100)
                await asyncio.sleep(0.05)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            stop.set()
            await task  # not cancelled: a batch ends its transaction


class Simulator:
    """The simulator's shopper pages (3-D Secure challenge) for the browser.

    The tests' simulator calls itself http://simulator.test, so that is where the checkout page sends the
    shopper. A Playwright route forwards those requests to its loopback port, and it is also the one point
    between the shopper's decision and the browser's way back (the simulator's 303 to the checkout page):
    `before_return` runs there, so the test decides whether Tender learns the outcome (a notification or a
    look-up) before the shopper is back. A resolver mapping (--host-resolver-rules) would need its own
    browser and gives no such hook.
    """

    def __init__(self, simulator_url: str) -> None:
        self._base = httpx.URL(simulator_url)
        self.before_return: Callable[[], Awaitable[None]] | None = None
        self.errors: list[BaseException] = []

    async def attach(self, page: Page) -> None:
        await page.context.route("http://simulator.test/**", self._forward)

    async def _forward(self, route: Route) -> None:
        url = httpx.URL(route.request.url)
        try:
            answer = await route.fetch(
                url=str(self._base.copy_with(path=url.path, query=url.query or None)), max_redirects=0
            )
            if answer.status == 303 and self.before_return is not None:
                await self.before_return()
            await route.fulfill(response=answer)  # a 303 too: Chromium follows it to the checkout page
        except Exception as exc:  # the test fails on it at teardown instead of a browser waiting for nothing
            self.errors.append(exc)
            await route.abort()


async def open_session(api: Any, merchant: Any, shop: Shop, order: str, **overrides: Any) -> dict[str, Any]:
    return await new_session(
        api,
        merchant,
        order,
        success_url=f"{shop.url}/thanks?order={order}",
        cancel_url=f"{shop.url}/cart?order={order}",
        **overrides,
    )


async def api_get(api: Any, merchant: Any, path: str) -> dict[str, Any]:
    r = await api.get(path, headers=auth(merchant.secret_key))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def payments_of(api: Any, merchant: Any) -> list[dict[str, Any]]:
    return list((await api_get(api, merchant, "/v1/payments"))["data"])


async def session_now(api: Any, merchant: Any, session: dict[str, Any]) -> dict[str, Any]:
    return await api_get(api, merchant, f"/v1/checkout/sessions/{session['id']}")


async def see_form(page: Page, session: dict[str, Any], merchant: Any, shots: Shots, step: str = "form") -> None:
    # The page itself, or the same page as the bank's return_url (`?returned=1`).
    await expect(page).to_have_url(re.compile(re.escape(session["url"]) + r"(\?returned=1)?$"))
    await expect(page).to_have_title(f"Pay 25.00 BRL · {merchant.merchant.name}")
    await expect(page.get_by_test_id("amount")).to_have_text("25.00 BRL")
    await expect(page.get_by_role("button", name="Pay 25.00 BRL")).to_be_enabled()
    await shots.shot(page, step)


async def open_form(page: Page, session: dict[str, Any], merchant: Any, shots: Shots) -> None:
    response = await page.goto(session["url"])
    assert response is not None and response.status == 200
    assert response.headers["cache-control"] == "no-store"
    await see_form(page, session, merchant, shots)


async def fill_card(page: Page, number: str, expiry: str = "10/30", cvc: str = "123") -> None:
    await page.get_by_label("Card number").fill(number)
    await page.get_by_label("Expiry (MM/YY)").fill(expiry)
    await page.get_by_label("Security code").fill(cvc)
    await page.get_by_label("Name on card").fill("Leia Organa")


async def see_processing(page: Page, shots: Shots) -> None:
    await expect(page.get_by_role("heading", name="Payment processing")).to_be_visible()
    await expect(page.get_by_text("Please don't close this page.")).to_be_visible()
    await shots.shot(page, "processing")


async def lands_at_the_shop(page: Page, shop: Shop, session: dict[str, Any], order: str, shots: Shots) -> None:
    """The "Payment successful" view, then (its meta refresh, 1 s) the shop's thank-you page."""
    await expect(page.get_by_role("heading", name="Payment successful")).to_be_visible(timeout=TIMEOUT_MS)
    await shots.shot(page, "payment successful")
    target = f"{shop.url}/thanks?order={order}&session_id={session['id']}&status=succeeded"
    await expect(page).to_have_url(target, timeout=TIMEOUT_MS)
    await expect(page.get_by_role("heading", name="Back at the shop")).to_be_visible()
    assert shop.visits == [("/thanks", {"order": order, "session_id": session["id"], "status": "succeeded"})]
    await shots.shot(page, "back at the shop")


async def paid_once(api: Any, merchant: Any, session: dict[str, Any], *statuses: str) -> dict[str, Any]:
    """The session is complete, its `payment` is the merchant's succeeded one; `statuses`: all the merchant's
    payments, oldest first."""
    payments = await payments_of(api, merchant)
    assert [p["status"] for p in reversed(payments)] == list(statuses)
    assert all(p["checkout_session"] == session["id"] for p in payments)
    now = await session_now(api, merchant, session)
    [succeeded] = [p for p in payments if p["status"] == "succeeded"]
    assert (now["status"], now["payment"]) == ("complete", succeeded["id"])
    return succeeded
