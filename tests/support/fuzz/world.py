"""Real objects for the fuzzer to find: a merchant and one of every kind of thing it owns, in the states the
operations act on, made through the API and the worker's own pumps (nothing inserted by hand)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

from tender.bootstrap import Container
from tender.domain.retry import RetryPolicy
from tender.services.settlement import settle_all
from tender.worker.pumps import PaymentPump, RefundPump

CREDIT = "4242424242424242"  # succeeds; its payable waits 30 days
DEBIT = "4000056655665556"  # succeeds; its payable is paid at once
DECLINED = "4000000000000002"
THREE_D_SECURE = "4000002760003184"  # ends in requires_action


@dataclass(frozen=True)
class World:
    admin_key: str
    secret_key: str
    merchant_id: str
    spare_merchant_id: str  # for operations that spoil a merchant (rolling its keys): never the fuzzing one
    final_payments: tuple[str, ...]  # succeeded, failed, canceled: their event streams end at once
    open_payments: tuple[str, ...]  # requires_capture, requires_action, processing (one is dead-lettered)
    capturable: tuple[str, ...]  # requires_capture, for capture only (a cancel would spoil them)
    cancelable: tuple[str, ...]  # requires_capture and requires_action, for cancel only
    refundable: tuple[str, ...]  # succeeded
    refunds: tuple[str, ...]
    sessions: tuple[str, ...]
    expirable_sessions: tuple[str, ...]
    endpoints: tuple[str, ...]
    deletable_endpoints: tuple[str, ...]
    events: tuple[str, ...]
    dead_letters: tuple[str, ...]
    payables: tuple[str, ...]
    settlements: tuple[str, ...]
    balance_transactions: tuple[str, ...]
    # Recurring payments (issue 15): customers (deletable ones apart), saved cards, test clocks.
    customers: tuple[str, ...] = ()
    deletable_customers: tuple[str, ...] = ()
    payment_methods: tuple[str, ...] = ()
    test_clocks: tuple[str, ...] = ()
    # Subscriptions: one to update, one to cancel (after which updates are 400s); their invoices.
    subscriptions: tuple[str, ...] = ()
    cancelable_subscriptions: tuple[str, ...] = ()
    invoices: tuple[str, ...] = ()

    def all_payments(self) -> tuple[str, ...]:
        return self.final_payments + self.open_payments


def card(number: str) -> dict[str, Any]:
    return {
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123", "holder_name": "Fuzz"},
    }


class _Seeder:
    def __init__(self, client: httpx.AsyncClient, container: Container) -> None:
        self.client = client
        self.container = container
        self.secret_key = ""
        self.fast = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0)

    async def call(self, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key or self.secret_key}"}
        r = await self.client.request(method, path, headers=headers, **kw)
        assert r.is_success, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r.json()

    async def ids(self, path: str, **params: Any) -> tuple[str, ...]:
        body = await self.call("GET", path, params={"limit": 100, **params})
        return tuple(str(o["id"]) for o in body["data"])

    async def pay(self, number: str, **extra: Any) -> str:
        body = {"amount": 2500, "currency": "BRL", "payment_method": card(number), **extra}
        return str((await self.call("POST", "/v1/payments", json=body))["id"])

    async def authorize(self, policy: RetryPolicy | None = None, rounds: int = 60) -> None:
        c = self.container
        pump = PaymentPump(c.db, c.vault, c.processors, lease_seconds=30, retry=policy or self.fast)
        await _drain(pump.run_batch, rounds)

    async def status(self, payment_id: str) -> str:
        return str((await self.call("GET", f"/v1/payments/{payment_id}"))["status"])


async def _drain(run_batch: Any, rounds: int) -> None:
    idle = 0
    for _ in range(rounds):
        idle = idle + 1 if await run_batch(100) == 0 else 0
        if idle == 3:
            return
        await asyncio.sleep(0.06)


async def seed(api_url: str, simulator_url: str, container: Container, admin_key: str) -> World:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        s = _Seeder(client, container)
        shop = await s.call("POST", "/admin/v1/merchants", admin_key, json={"name": "Fuzz shop"})
        spare = await s.call("POST", "/admin/v1/merchants", admin_key, json={"name": "Fuzz spare"})
        s.secret_key = shop["secret_key"]

        # Endpoints first, so the events below each leave a delivery to list (nothing delivers them: no
        # worker runs here, and .example names no host).
        hook = {"url": "https://receiver.example/tender", "events": ["*"]}
        endpoints = [(await s.call("POST", "/v1/webhook_endpoints", json=hook))["id"] for _ in range(4)]

        succeeded = [await s.pay(CREDIT), await s.pay(CREDIT), await s.pay(DEBIT)]
        failed = await s.pay(DECLINED)
        uncaptured = [await s.pay(CREDIT, capture=False) for _ in range(3)]
        challenged = await s.pay(THREE_D_SECURE)
        await s.authorize()
        expected = dict.fromkeys(succeeded, "succeeded") | {failed: "failed", challenged: "requires_action"}
        expected |= dict.fromkeys(uncaptured, "requires_capture")
        for payment_id, status in expected.items():
            assert await s.status(payment_id) == status, payment_id
        canceled = uncaptured.pop()
        await s.call("POST", f"/v1/payments/{canceled}/cancel")
        await s.authorize()
        assert await s.status(canceled) == "canceled"

        # A payment whose authorization exhausted its tries against a failing processor: a dead letter.
        async with httpx.AsyncClient(base_url=simulator_url) as sim:
            await sim.post("/_sim/config", json={"error_rate": 1.0})
            try:
                stuck = await s.pay(CREDIT)
                policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0, max_tries=1)
                await s.authorize(policy, rounds=5)
            finally:
                await sim.post("/_sim/config", json={"error_rate": 0.0})

        refund = await s.call("POST", "/v1/refunds", json={"payment": succeeded[0], "amount": 500})
        refunds = RefundPump(container.db, container.processors, lease_seconds=30, retry=s.fast)
        await _drain(refunds.run_batch, 60)
        assert (await s.call("GET", f"/v1/refunds/{refund['id']}"))["status"] == "succeeded"

        # Settle everything captured (the credit payables are due in 30 days): settlements and paid payables.
        payables = await s.ids("/v1/payables")
        last_day = max(date.fromisoformat(p["payment_date"]) for p in (await s.call("GET", "/v1/payables"))["data"])
        await settle_all(container.db, last_day, max_groups=50)

        session = {
            "amount": 1500,
            "currency": "BRL",
            "success_url": "https://shop.example/thanks",
            "cancel_url": "https://shop.example/cart",
        }
        sessions = [
            (await s.call("POST", "/v1/checkout/sessions", json={**session, "reference": f"fuzz-{i}"}))["id"]
            for i in range(2)
        ]

        clocks = [(await s.call("POST", "/v1/test_clocks", json={"frozen_time": "2027-01-31T12:00:00Z"}))["id"]]
        customers = [
            (await s.call("POST", "/v1/customers", json={"email": f"c{i}@fuzz.example"}))["id"] for i in range(4)
        ]
        saved = {"type": "card", "card": {"number": CREDIT, "exp_month": 12, "exp_year": 2034}}
        methods = [
            (await s.call("POST", "/v1/payment_methods", json={**saved, "customer": customers[0]}))["id"],
            (await s.call("POST", "/v1/payment_methods", json=saved))["id"],
        ]
        plan = {"customer": customers[0], "payment_method": methods[0], "amount": 1000, "currency": "BRL"}
        subscriptions = [
            (await s.call("POST", "/v1/subscriptions", json={**plan, "interval": "month"}))["id"] for _ in range(2)
        ]

        body = await s.call("GET", "/admin/v1/dead_letters", admin_key, params={"limit": 100})
        dead_letters = tuple(d["id"] for d in body["data"] if d["object_id"] == stuck)
        assert dead_letters, "no dead letter for the payment authorized against a failing processor"

        world = World(
            admin_key=admin_key,
            secret_key=s.secret_key,
            merchant_id=shop["id"],
            spare_merchant_id=spare["id"],
            final_payments=(*succeeded, failed, canceled),
            open_payments=(*uncaptured, challenged, stuck),
            capturable=(uncaptured[0],),
            cancelable=(uncaptured[1], challenged),
            refundable=tuple(succeeded),
            refunds=await s.ids("/v1/refunds"),
            sessions=(sessions[0],),
            expirable_sessions=(sessions[1],),
            endpoints=tuple(endpoints[:2]),
            deletable_endpoints=tuple(endpoints[2:]),
            events=await s.ids("/v1/events"),
            dead_letters=dead_letters,
            payables=payables,
            settlements=await s.ids("/v1/settlements"),
            balance_transactions=await s.ids("/v1/balance_transactions"),
            customers=tuple(customers[:2]),
            deletable_customers=tuple(customers[2:]),
            payment_methods=tuple(methods),
            test_clocks=tuple(clocks),
            subscriptions=(subscriptions[0],),
            cancelable_subscriptions=(subscriptions[1],),
            invoices=await s.ids("/v1/invoices"),
        )
    for kind in ("refunds", "events", "payables", "settlements", "balance_transactions"):
        assert getattr(world, kind), f"seeding made no {kind}"
    return world
