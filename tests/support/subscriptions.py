"""Subscriptions through the API in process: a customer with a saved card (on a test clock or not), a
subscription, a clock advanced while the payment pump runs beside it (an advance waits for its payments), the
renewal pump, and reading invoices and events back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from tender.services.billing import BillingSetup
from tender.worker.pumps import RenewalPump
from tests.support.api import auth
from tests.support.payments import authorizer

GOOD = "4242424242424242"
DECLINE = "4000000000009995"  # card_declined / insufficient_funds
ONCE = "4000000000001117"  # succeeds the first time it is charged, declined afterwards


def renewer(container: Any, lease: float = 30.0) -> RenewalPump:
    setup = BillingSetup.of(container.settings.business_tz, container.default_processor, container.processors)
    return RenewalPump(container.db, setup=setup, lease_seconds=lease)


async def call(api: Any, merchant: Any, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    r = await api.request(method, path, json=body, headers=auth(merchant.secret_key))
    assert r.status_code == status, r.text
    return r.json()


async def saved_card(api: Any, merchant: Any, number: str = GOOD, customer: str | None = None) -> str:
    # Each card gets its own holder name: the simulator's succeed-once card counts per card as typed.
    card = {"number": number, "exp_month": 12, "exp_year": 2035, "holder_name": f"Holder {uuid.uuid4().hex[:8]}"}
    body: dict[str, Any] = {"type": "card", "card": card}
    if customer is not None:
        body["customer"] = customer
    return str((await call(api, merchant, "POST", "/v1/payment_methods", body, 201))["id"])


async def clock(api: Any, merchant: Any, frozen_time: str) -> str:
    return str((await call(api, merchant, "POST", "/v1/test_clocks", {"frozen_time": frozen_time}, 201))["id"])


async def customer(api: Any, merchant: Any, number: str | None = GOOD, test_clock: str | None = None) -> str:
    body: dict[str, Any] = {"email": "ana@example.com"}
    if number is not None:
        body["payment_method"] = await saved_card(api, merchant, number)
    if test_clock is not None:
        body["test_clock"] = test_clock
    return str((await call(api, merchant, "POST", "/v1/customers", body, 201))["id"])


async def subscribe(api: Any, merchant: Any, customer_id: str, **fields: Any) -> dict[str, Any]:
    body = {"customer": customer_id, "amount": 1000, "currency": "BRL", "interval": "month", **fields}
    return dict(await call(api, merchant, "POST", "/v1/subscriptions", body, 201))


async def subscription(api: Any, merchant: Any, sub_id: str) -> dict[str, Any]:
    return dict(await call(api, merchant, "GET", f"/v1/subscriptions/{sub_id}"))


async def invoices(api: Any, merchant: Any, sub_id: str) -> list[dict[str, Any]]:
    """The subscription's invoices, oldest first."""
    body = await call(api, merchant, "GET", f"/v1/invoices?subscription={sub_id}&limit=100")
    return list(reversed(body["data"]))


async def event_types(api: Any, merchant: Any, object_id: str) -> list[str]:
    """The object's event types, oldest first."""
    body = await call(api, merchant, "GET", f"/v1/events?object={object_id}&limit=100")
    return [e["type"] for e in reversed(body["data"])]


@contextlib.asynccontextmanager
async def payments_running(container: Any) -> AsyncIterator[None]:
    """The payment pump running in the background (as the worker would), for clock advances to wait on."""
    pump = authorizer(container)
    stop = asyncio.Event()

    async def run() -> None:
        while not stop.is_set():
            if await pump.run_batch(100) == 0:
                await asyncio.sleep(0.02)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        stop.set()
        await task


async def advance(api: Any, merchant: Any, clock_id: str, frozen_time: str) -> dict[str, Any]:
    return dict(await call(api, merchant, "POST", f"/v1/test_clocks/{clock_id}/advance", {"frozen_time": frozen_time}))


async def query(container: Any, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with container.db.connection() as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())
