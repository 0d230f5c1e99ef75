"""Driving a payment through the pipeline in process: create and read it through the API, run the authorization
pump until nothing is due, play the shopper on the simulator's pages and the simulator's signed notifications,
and read attempts and notification outcomes from the database."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson

from tender.domain.retry import RetryPolicy
from tender.simulator.notify import sign
from tender.worker.pumps import PaymentPump
from tests.support.api import auth, card_payment

THREE_DS = "4000002760003184"  # ends in requires_action: the simulator's 3-D Secure challenge


def authorizer(container: Any, lease: float = 30.0, **retry: Any) -> PaymentPump:
    """The payment pump with a test's back-off (at most 0.05 s, look-ups at once); `retry` overrides the policy."""
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0, **retry)
    return PaymentPump(container.db, container.vault, container.processors, lease_seconds=lease, retry=policy)


async def drain(a: PaymentPump, rounds: int = 80) -> None:
    """Run batches until nothing is due for a few rounds in a row (the test back-off is at most 0.05 s)."""
    idle = 0
    for _ in range(rounds):
        idle = idle + 1 if await a.run_batch(100) == 0 else 0
        if idle == 3:
            return
        await asyncio.sleep(0.06)


async def pay(api: Any, merchant: Any, number: str = "4242424242424242", **kw: Any) -> dict[str, Any]:
    r = await api.post("/v1/payments", json=card_payment(number, **kw), headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    return dict(r.json())


async def get(api: Any, merchant: Any, payment_id: str) -> dict[str, Any]:
    return dict((await api.get(f"/v1/payments/{payment_id}", headers=auth(merchant.secret_key))).json())


async def sim_records(simulator_app: Any, payment_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=simulator_app), base_url="http://s") as c:
        r = await c.get("/_sim/authorizations", params={"payment": payment_id})
    data = r.json()
    return list(data["data"] if isinstance(data, dict) else data)


async def post(api: Any, merchant: Any, path: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
    return await api.post(path, json=body or {}, headers={**auth(merchant.secret_key), **headers})


async def attempt_of(container: Any, payment_id: str, operation: str = "authorize") -> dict[str, Any]:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM payment_attempts WHERE payment_id = %s AND operation = %s ORDER BY id DESC LIMIT 1",
            (payment_id, operation),
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(row)


async def make_due(container: Any, payment_id: str) -> None:
    async with container.db.connection() as conn:
        await conn.execute("UPDATE payments SET next_run_at = now() WHERE id = %s", (payment_id,))


async def authorized(api: Any, container: Any, merchant: Any, number: str = "4242424242424242") -> dict[str, Any]:
    created = await pay(api, merchant, number, capture=False)
    await drain(authorizer(container))
    p = await get(api, merchant, created["id"])
    assert p["status"] == "requires_capture"
    return p


async def three_ds_payment(api: Any, container: Any, merchant: Any) -> dict[str, Any]:
    created = await pay(api, merchant, THREE_DS, return_url="https://shop.example/back")
    await drain(authorizer(container))
    p = await get(api, merchant, created["id"])
    assert p["status"] == "requires_action"
    return p


async def shopper_decides(simulator_url: str, payment: dict[str, Any], decision: str) -> httpx.Response:
    path = httpx.URL(payment["next_action"]["url"]).path
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        page = await sim.get(path)
        assert page.status_code == 200 and "Approve" in page.text
        return await sim.post(path, data={"decision": decision}, follow_redirects=False)


async def notification_for(
    simulator_url: str, reference: str, event_id: str | None = None, **override: Any
) -> tuple[bytes, dict[str, str]]:
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        data = (await sim.get(f"/v1/authorizations/{reference}")).json()
    data.update(override)
    event = {
        "id": event_id or f"simevt_{uuid.uuid4().hex}",
        "type": "authorization.updated",
        "created": int(time.time()),
        "data": data,
    }
    body = orjson.dumps(event)
    return body, {
        "Simulator-Signature": sign("simsecret_dev", body, int(time.time())),
        "Content-Type": "application/json",
    }


async def notification_outcomes(container: Any, reference: str) -> list[str]:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT outcome FROM processor_events WHERE payload->'data'->>'reference' = %s ORDER BY received",
            (reference,),
        )
        return [r["outcome"] for r in await cur.fetchall()]
