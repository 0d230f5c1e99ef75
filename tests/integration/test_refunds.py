"""Refunds end to end: the API's checks, the refund pump against the real simulator (served on a loopback
port), the money side (payment, payables, ledger) and the unknown-outcome and dead-letter paths. Real
PostgreSQL. After every scenario the ledger checks of `tender ledger verify` find nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tender.processors.base import Outcome, ProcessorResult
from tender.processors.simulator import SimulatorProcessor
from tender.services import refunds as refund_service
from tender.services.merchants import create_merchant
from tender.store import ledger as ledger_store
from tender.worker.pumps import RefundPump
from tests.support.api import auth
from tests.support.payments import authorizer, drain, get, pay
from tests.support.refunds import drain_refunds, pump, refund

pytestmark = pytest.mark.integration

CREDIT = "4242424242424242"  # its capture payable waits 30 days under the default plan
DEBIT = "4000056655665556"  # its capture payable is paid at once


async def captured(api: Any, container: Any, merchant: Any, number: str = CREDIT, amount: int = 2500) -> str:
    created = await pay(api, merchant, number, amount=amount)
    await drain(authorizer(container))
    payment = await get(api, merchant, created["id"])
    assert (payment["status"], payment["amount_captured"]) == ("succeeded", amount)
    return str(created["id"])


async def fetch(api: Any, merchant: Any, refund_id: str) -> dict[str, Any]:
    r = await api.get(f"/v1/refunds/{refund_id}", headers=auth(merchant.secret_key))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def query(container: Any, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with container.db.connection() as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())


async def execute(container: Any, sql: str, *args: Any) -> None:
    async with container.db.connection() as conn:
        await conn.execute(sql, args)


async def balances(container: Any, merchant: Any) -> dict[str, int]:
    async with container.db.connection() as conn:
        rows = await ledger_store.merchant_balances(conn, merchant.merchant.id)
    return {r.kind: r.amount for r in rows}


async def payable_sums(container: Any, merchant: Any) -> dict[str, int]:
    rows = await query(
        container, "SELECT status, sum(net) AS net FROM payables WHERE merchant_id = %s GROUP BY status",
        merchant.merchant.id,
    )  # fmt: skip
    return {r["status"]: int(r["net"]) for r in rows}


async def assert_ledger_clean(container: Any) -> None:
    async with container.db.connection() as conn:
        assert await ledger_store.unbalanced_entries(conn) == []
        assert await ledger_store.drifted_accounts(conn) == []
        assert await ledger_store.balances_against_payables(conn) == []


async def sim_refunds(simulator_url: str, refund_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        ops = (await sim.get("/_sim/operations")).json()["data"]
    return [o for o in ops if o["reference"] == refund_id]


async def sim_authorization(container: Any, simulator_url: str, payment_id: str) -> dict[str, Any]:
    [attempt] = await query(
        container, "SELECT id FROM payment_attempts WHERE payment_id = %s AND operation = 'authorize'", payment_id
    )
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        return dict((await sim.get(f"/v1/authorizations/{attempt['id']}")).json())


@pytest.fixture
async def shop(container: Any) -> Any:
    """A merchant of its own: balances and payable sums are this test's alone."""
    return await create_merchant(container.db, "Refund shop")


@pytest.fixture
async def sim_admin(simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator_url) as client:
        yield client
        reset = {"error_rate": 0, "timeout_rate": 0, "drop_rate": 0, "timeout_seconds": 15.0}
        assert (await client.post("/_sim/config", json=reset)).status_code == 200


# -- full and partial refunds, and the money -----------------------------------------------------------


async def test_full_refund_of_a_waiting_payable(api: Any, container: Any, shop: Any, simulator_url: str) -> None:
    payment_id = await captured(api, container, shop, CREDIT)
    r = await refund(api, shop, {"payment": payment_id, "reason": "requested_by_customer", "metadata": {"o": "7"}})
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["id"].startswith("re_") and r.headers["location"] == f"/v1/refunds/{created['id']}"
    assert {k: created[k] for k in ("object", "payment", "amount", "currency", "status", "reason", "metadata")} == {
        "object": "refund", "payment": payment_id, "amount": 2500, "currency": "BRL", "status": "pending",
        "reason": "requested_by_customer", "metadata": {"o": "7"},
    }  # fmt: skip
    assert (created["failure_code"], created["failure_message"]) == (None, None)
    # Nothing moves before the processor says yes.
    assert (await get(api, shop, payment_id))["amount_refunded"] == 0
    assert await balances(container, shop) == {"merchant_pending": 2375}

    await drain_refunds(pump(container))
    done = await fetch(api, shop, created["id"])
    assert done["status"] == "succeeded" and done["updated"] >= created["updated"]
    assert (await get(api, shop, payment_id))["amount_refunded"] == 2500

    [capture, back] = await query(
        container, "SELECT * FROM payables WHERE payment_id = %s ORDER BY type", payment_id
    )  # 'payment' < 'refund'
    assert (back["type"], back["refund_id"], back["status"]) == ("refund", created["id"], "waiting_funds")
    assert (back["amount"], back["fee"], back["net"], back["currency"]) == (-2500, 0, -2500, "BRL")
    assert back["payment_date"] == capture["payment_date"]  # settles together with the capture
    assert (back["payment_method"], back["funding"], back["paid_at"]) == ("card", "credit", None)
    # The fee is not returned: the merchant owes the platform's 125 on a fully refunded payment.
    assert await balances(container, shop) == {"merchant_pending": -125}
    assert await payable_sums(container, shop) == {"waiting_funds": -125}
    [entry] = await query(container, "SELECT * FROM journal_entries WHERE source_id = %s", created["id"])
    assert (entry["type"], entry["amount"], entry["fee"], entry["net"]) == ("refund", -2500, 0, -2500)
    assert entry["available_on"] == capture["payment_date"]
    lines = await query(container, "SELECT account_id, amount FROM journal_lines WHERE entry_id = %s", entry["id"])
    assert {r["account_id"]: r["amount"] for r in lines} == {
        f"merchant:{shop.merchant.id}:pending:BRL": 2500,
        "processor:simulator:receivable:BRL": -2500,
    }
    # Exactly one refund at the simulator, under the refund's id, against the payment's authorization.
    [op] = await sim_refunds(simulator_url, created["id"])
    assert (op["kind"], op["amount"], op["status"]) == ("refund", 2500, "succeeded")
    assert (await sim_authorization(container, simulator_url, payment_id))["amount_refunded"] == 2500
    evts = await query(container, "SELECT type, data FROM events WHERE object_id = %s", created["id"])
    assert [(e["type"], e["data"]["object"]["status"]) for e in evts] == [("refund.succeeded", "succeeded")]
    # Nothing is left: neither a full nor a partial refund is accepted any more.
    again = await refund(api, shop, {"payment": payment_id})
    assert again.status_code == 400 and again.json()["error"]["param"] == "payment"
    assert again.json()["error"]["code"] == "charge_already_refunded"
    more = await refund(api, shop, {"payment": payment_id, "amount": 1})
    assert more.status_code == 400 and more.json()["error"]["param"] == "amount"
    await assert_ledger_clean(container)


async def test_partial_refunds_up_to_the_captured_amount(api: Any, container: Any, shop: Any) -> None:
    payment_id = await captured(api, container, shop, CREDIT)
    first = await refund(api, shop, {"payment": payment_id, "amount": 1000})
    second = await refund(api, shop, {"payment": payment_id, "amount": 700})
    assert (first.status_code, second.status_code) == (202, 202)
    # 800 is left while both are pending: they hold their amounts.
    over = await refund(api, shop, {"payment": payment_id, "amount": 801})
    assert over.status_code == 400, over.text
    assert (over.json()["error"]["param"], over.json()["error"]["code"]) == ("amount", "amount_too_large")
    assert "800" in over.json()["error"]["message"]
    await drain_refunds(pump(container))
    assert (await get(api, shop, payment_id))["amount_refunded"] == 1700
    assert await balances(container, shop) == {"merchant_pending": 2375 - 1700}
    # Amount omitted: what is left.
    rest = await refund(api, shop, {"payment": payment_id})
    assert rest.status_code == 202 and rest.json()["amount"] == 800
    await drain_refunds(pump(container))
    p = await get(api, shop, payment_id)
    assert (p["amount_captured"], p["amount_refunded"]) == (2500, 2500)
    statuses = await query(container, "SELECT status FROM refunds WHERE payment_id = %s", payment_id)
    assert [r["status"] for r in statuses] == ["succeeded"] * 3
    assert await balances(container, shop) == {"merchant_pending": -125}
    assert await payable_sums(container, shop) == {"waiting_funds": -125}
    assert (await refund(api, shop, {"payment": payment_id, "amount": 1})).status_code == 400
    await assert_ledger_clean(container)


async def test_refund_after_the_payable_was_paid_comes_from_available(api: Any, container: Any, shop: Any) -> None:
    payment_id = await captured(api, container, shop, DEBIT)
    [capture] = await query(container, "SELECT status, net FROM payables WHERE payment_id = %s", payment_id)
    assert (capture["status"], capture["net"]) == ("paid", 2425)  # debit: 3%, paid at once
    r = await refund(api, shop, {"payment": payment_id, "amount": 1000})
    assert r.status_code == 202
    await drain_refunds(pump(container))
    assert (await fetch(api, shop, r.json()["id"]))["status"] == "succeeded"
    [back] = await query(container, "SELECT * FROM payables WHERE refund_id = %s", r.json()["id"])
    assert (back["status"], back["amount"], back["net"], back["funding"]) == ("paid", -1000, -1000, "debit")
    assert back["payment_date"] == datetime.now(UTC).date() and back["paid_at"] is not None
    assert await balances(container, shop) == {"merchant_available": 1425}
    assert await payable_sums(container, shop) == {"paid": 1425}
    evts = await query(container, "SELECT type FROM events WHERE object_id = %s", back["id"])
    assert [e["type"] for e in evts] == ["payable.paid"]
    # The rest, then: the available balance goes below zero by the fee the merchant keeps paying.
    rest = await refund(api, shop, {"payment": payment_id})
    assert rest.json()["amount"] == 1500
    await drain_refunds(pump(container))
    assert await balances(container, shop) == {"merchant_available": -75}
    assert await payable_sums(container, shop) == {"paid": -75}
    await assert_ledger_clean(container)


async def test_mixed_payables_on_one_merchant(api: Any, container: Any, shop: Any) -> None:
    credit = await captured(api, container, shop, CREDIT)
    debit = await captured(api, container, shop, DEBIT)
    for payment_id in (credit, debit):
        assert (await refund(api, shop, {"payment": payment_id, "amount": 500})).status_code == 202
    await drain_refunds(pump(container))  # both in one batch
    assert await balances(container, shop) == {"merchant_pending": 2375 - 500, "merchant_available": 2425 - 500}
    assert await payable_sums(container, shop) == {"waiting_funds": 1875, "paid": 1925}
    await assert_ledger_clean(container)


# -- refused requests ----------------------------------------------------------------------------------


async def test_only_a_captured_payment_can_be_refunded(api: Any, container: Any, shop: Any) -> None:
    uncaptured = await pay(api, shop, CREDIT, capture=False)
    declined = await pay(api, shop, "4000000000000002")
    await drain(authorizer(container))
    processing = await pay(api, shop, CREDIT)  # not yet authorized
    assert (await get(api, shop, uncaptured["id"]))["status"] == "requires_capture"
    assert (await get(api, shop, declined["id"]))["status"] == "failed"
    for p in (uncaptured, declined, processing):
        r = await refund(api, shop, {"payment": p["id"]})
        assert r.status_code == 400, r.text
        assert (r.json()["error"]["param"], r.json()["error"]["code"]) == ("payment", "payment_unexpected_state")
    missing = await refund(api, shop, {"payment": "pay_nope"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "payment"
    other = await create_merchant(container.db, "Other shop")
    paid = await captured(api, container, shop, CREDIT)
    theirs = await refund(api, other, {"payment": paid, "amount": 100})
    assert theirs.status_code == 400 and theirs.json()["error"]["code"] == "resource_missing"
    assert await query(container, "SELECT id FROM refunds WHERE merchant_id = %s", shop.merchant.id) == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "payment"),
        ({"payment": 7}, "payment"),
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 12.5}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 2501}, "amount"),
        ({"reason": 3}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": "no"}, "metadata"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_bad_refund_requests_name_the_field(
    api: Any, container: Any, shop: Any, body: dict[str, Any], param: str
) -> None:
    payment_id = await captured(api, container, shop, CREDIT)
    full = body if body == {} or "payment" in body else {"payment": payment_id, **body}
    r = await refund(api, shop, full)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert await query(container, "SELECT id FROM refunds WHERE payment_id = %s", payment_id) == []


async def test_a_body_that_is_not_json_is_a_400(api: Any, shop: Any) -> None:
    r = await api.post("/v1/refunds", content=b"{nope", headers=auth(shop.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"
    assert (await api.post("/v1/refunds", json={"payment": "pay_x"})).status_code == 401


async def test_a_concurrent_pair_that_would_exceed_the_capture_has_one_refused(
    api: Any, container: Any, shop: Any
) -> None:
    payment_id = await captured(api, container, shop, CREDIT)
    results = await asyncio.gather(
        refund(api, shop, {"payment": payment_id, "amount": 1500}),
        refund(api, shop, {"payment": payment_id, "amount": 1500}),
    )
    assert sorted(r.status_code for r in results) == [202, 400]
    [refused] = [r for r in results if r.status_code == 400]
    assert refused.json()["error"]["param"] == "amount"
    # A pair that fits is both accepted.
    fits = await asyncio.gather(*(refund(api, shop, {"payment": payment_id, "amount": 500}) for _ in range(2)))
    assert [r.status_code for r in fits] == [202, 202]
    await drain_refunds(pump(container))
    assert (await get(api, shop, payment_id))["amount_refunded"] == 2500
    await assert_ledger_clean(container)


async def test_idempotent_replay(api: Any, container: Any, shop: Any, simulator_url: str) -> None:
    payment_id = await captured(api, container, shop, CREDIT)
    body = {"payment": payment_id, "amount": 900}
    first = await refund(api, shop, body, **{"Idempotency-Key": "refund-1"})
    replay = await refund(api, shop, body, **{"Idempotency-Key": "refund-1"})
    assert (first.status_code, replay.status_code) == (202, 202)
    assert replay.content == first.content and replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["location"] == first.headers["location"]
    assert "idempotent-replayed" not in first.headers
    other = await refund(api, shop, {**body, "amount": 901}, **{"Idempotency-Key": "refund-1"})
    assert other.status_code == 422 and other.json()["error"]["type"] == "idempotency_error"
    assert len(await query(container, "SELECT id FROM refunds WHERE payment_id = %s", payment_id)) == 1
    await drain_refunds(pump(container))
    # After it succeeded, the replay still answers the first response, and nothing is refunded again.
    late = await refund(api, shop, body, **{"Idempotency-Key": "refund-1"})
    assert late.content == first.content
    await drain_refunds(pump(container))
    assert (await get(api, shop, payment_id))["amount_refunded"] == 900
    assert len(await sim_refunds(simulator_url, first.json()["id"])) == 1
    await assert_ledger_clean(container)


# -- retrieving and listing ----------------------------------------------------------------------------


async def test_get_and_list(api: Any, container: Any, shop: Any) -> None:
    a = await captured(api, container, shop, CREDIT)
    b = await captured(api, container, shop, CREDIT)
    made = [(await refund(api, shop, {"payment": p, "amount": 100})).json()["id"] for p in (a, a, b)]
    h = auth(shop.secret_key)
    page = (await api.get("/v1/refunds", params={"limit": 2}, headers=h)).json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [r["id"] for r in page["data"]] == [made[2], made[1]]  # newest first
    rest = (await api.get("/v1/refunds", params={"limit": 2, "starting_after": made[1]}, headers=h)).json()
    assert ([r["id"] for r in rest["data"]], rest["has_more"]) == ([made[0]], False)
    of_a = (await api.get("/v1/refunds", params={"payment": a}, headers=h)).json()
    assert [r["id"] for r in of_a["data"]] == [made[1], made[0]]
    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "x"}):
        r = await api.get("/v1/refunds", params=bad, headers=h)
        assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
    other = await create_merchant(container.db, "Other shop")
    assert (await api.get(f"/v1/refunds/{made[0]}", headers=auth(other.secret_key))).status_code == 404
    assert (await api.get("/v1/refunds", headers=auth(other.secret_key))).json()["data"] == []
    assert (await api.get("/v1/refunds/re_missing", headers=h)).status_code == 404
    await drain_refunds(pump(container))
    await assert_ledger_clean(container)


# -- the processor: declines, unknown outcomes, transient failures -------------------------------------


async def test_a_processor_decline_fails_the_refund_and_moves_no_money(
    api: Any, container: Any, shop: Any, simulator_url: str
) -> None:
    payment_id = await captured(api, container, shop, CREDIT)
    authorization = await sim_authorization(container, simulator_url, payment_id)
    async with httpx.AsyncClient(base_url=simulator_url) as sim:  # refunded behind Tender's back
        out_of_band = {"reference": "oob-" + payment_id, "authorization": authorization["reference"]}
        assert (await sim.post("/v1/refunds", json=out_of_band)).json()["status"] == "succeeded"
    r = await refund(api, shop, {"payment": payment_id, "amount": 1000})
    await drain_refunds(pump(container))
    failed = await fetch(api, shop, r.json()["id"])
    assert (failed["status"], failed["failure_code"]) == ("failed", "already_refunded")
    assert failed["failure_message"]
    assert (await get(api, shop, payment_id))["amount_refunded"] == 0
    assert await query(container, "SELECT id FROM payables WHERE refund_id = %s", failed["id"]) == []
    assert await query(container, "SELECT id FROM journal_entries WHERE source_id = %s", failed["id"]) == []
    assert await balances(container, shop) == {"merchant_pending": 2375}
    evts = await query(container, "SELECT type FROM events WHERE object_id = %s", failed["id"])
    assert [e["type"] for e in evts] == ["refund.failed"]
    # A failed refund holds nothing: the whole amount can be asked for again.
    again = await refund(api, shop, {"payment": payment_id})
    assert again.status_code == 202 and again.json()["amount"] == 2500
    await drain_refunds(pump(container))
    await assert_ledger_clean(container)


async def test_a_timeout_is_resolved_by_lookup_with_one_refund_at_the_simulator(
    api: Any, container: Any, shop: Any, simulator_url: str, sim_admin: httpx.AsyncClient
) -> None:
    payment_id = await captured(api, container, shop, CREDIT)
    r = await refund(api, shop, {"payment": payment_id, "amount": 1200})
    refund_id = r.json()["id"]
    impatient = SimulatorProcessor(simulator_url, timeout=0.3)
    try:
        # The simulator refunds, then answers after 1 s; we give up after 0.3 s: an unknown outcome.
        assert (await sim_admin.post("/_sim/config", json={"timeout_rate": 1.0, "timeout_seconds": 1.0})).is_success
        p = pump(container, {"simulator": impatient})
        assert await p.run_batch(100) == 1
        [row] = await query(
            container, "SELECT status, maybe_sent, calls, last_error FROM refunds WHERE id = %s", refund_id
        )
        assert (row["status"], row["maybe_sent"], row["calls"]) == ("pending", True, 1)
        assert "unknown outcome" in row["last_error"]
        assert (await get(api, shop, payment_id))["amount_refunded"] == 0
        assert len(await sim_refunds(simulator_url, refund_id)) == 1  # it did land
        # Still faulty: the next try looks it up (look-ups are never faulted) instead of sending again.
        await drain_refunds(p)
    finally:
        await impatient.aclose()
    assert (await fetch(api, shop, refund_id))["status"] == "succeeded"
    [row] = await query(container, "SELECT calls FROM refunds WHERE id = %s", refund_id)
    assert row["calls"] == 1  # the look-up answered: no second call
    [op] = await sim_refunds(simulator_url, refund_id)
    assert (op["amount"], op["request_count"]) == (1200, 1)
    assert (await get(api, shop, payment_id))["amount_refunded"] == 1200
    assert (await sim_authorization(container, simulator_url, payment_id))["amount_refunded"] == 1200
    assert await balances(container, shop) == {"merchant_pending": 2375 - 1200}
    await assert_ledger_clean(container)


class LostFirstCall:
    """The simulator behind a network that loses the first refund request before it arrives (an unknown
    outcome to the caller), and records what the refund row said while each call was in flight."""

    def __init__(self, inner: SimulatorProcessor, container: Any) -> None:
        self.inner, self.container = inner, container
        self.sent: list[tuple[str, str, int | None, bool]] = []

    async def refund(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult:
        [row] = await query(self.container, "SELECT maybe_sent FROM refunds WHERE id = %s", reference)
        self.sent.append((reference, authorization, amount, row["maybe_sent"]))
        if len(self.sent) == 1:
            return ProcessorResult(Outcome.UNKNOWN, message="connection reset")
        return await self.inner.refund(reference, authorization, amount)

    async def lookup_operation(self, reference: str) -> ProcessorResult:
        return await self.inner.lookup_operation(reference)


async def test_an_unknown_outcome_not_found_on_lookup_is_resent_under_the_same_id(
    api: Any, container: Any, shop: Any, simulator_url: str
) -> None:
    payment_id = await captured(api, container, shop, CREDIT)
    refund_id = (await refund(api, shop, {"payment": payment_id, "amount": 300})).json()["id"]
    [attempt] = await query(
        container, "SELECT id FROM payment_attempts WHERE payment_id = %s AND operation = 'authorize'", payment_id
    )
    lossy = LostFirstCall(container.processors["simulator"], container)
    await drain_refunds(pump(container, {"simulator": lossy}))
    assert (await fetch(api, shop, refund_id))["status"] == "succeeded"
    # Both calls under the refund's own id, against the authorize attempt, with maybe_sent committed first.
    assert lossy.sent == [(refund_id, attempt["id"], 300, True)] * 2
    assert len(await sim_refunds(simulator_url, refund_id)) == 1
    assert (await get(api, shop, payment_id))["amount_refunded"] == 300
    await assert_ledger_clean(container)


async def test_transient_failures_end_in_a_dead_letter_then_janitor_lookups(
    api: Any, container: Any, shop: Any, simulator_url: str, sim_admin: httpx.AsyncClient
) -> None:
    payment_id = await captured(api, container, shop, CREDIT)
    refund_id = (await refund(api, shop, {"payment": payment_id, "amount": 400})).json()["id"]
    p = pump(container, max_tries=2, janitor_seconds=3600)
    assert (await sim_admin.post("/_sim/config", json={"error_rate": 1.0})).is_success
    for _ in range(2):
        await make_due(container, refund_id)
        assert await p.run_batch(100) == 1
    [row] = await query(
        container, "SELECT status, maybe_sent, next_run_at - now() AS wait, last_error FROM refunds WHERE id = %s",
        refund_id,
    )  # fmt: skip
    assert (row["status"], row["maybe_sent"]) == ("pending", False)  # a 503 certainly did nothing
    assert row["wait"] > timedelta(minutes=30) and "transient" in row["last_error"]
    [letter] = await query(container, "SELECT * FROM dead_letters WHERE object_id = %s", refund_id)
    assert (letter["kind"], letter["operation"], letter["status"], letter["tries"]) == ("refund", "refund", "open", 2)
    # The janitor only looks up: nothing is sent, even to a healthy simulator.
    assert (await sim_admin.post("/_sim/config", json={"error_rate": 0})).is_success
    await make_due(container, refund_id)
    assert await p.run_batch(100) == 1
    assert (await fetch(api, shop, refund_id))["status"] == "pending"
    assert await sim_refunds(simulator_url, refund_id) == []
    assert len(await query(container, "SELECT id FROM dead_letters WHERE object_id = %s", refund_id)) == 1
    # An operator's retry gives it fresh tries.
    async with container.db.transaction() as conn:
        assert await refund_service.retry_dead_letter(conn, refund_id)
    await drain_refunds(p)
    assert (await fetch(api, shop, refund_id))["status"] == "succeeded"
    [letter] = await query(container, "SELECT status FROM dead_letters WHERE object_id = %s", refund_id)
    assert letter["status"] == "resolved"
    assert len(await sim_refunds(simulator_url, refund_id)) == 1
    await assert_ledger_clean(container)


async def test_a_result_is_dropped_when_the_lease_changed_hands(api: Any, container: Any, shop: Any) -> None:
    """A slow worker whose lease was taken over writes nothing: the row's new holder decides."""
    payment_id = await captured(api, container, shop, CREDIT)
    refund_id = (await refund(api, shop, {"payment": payment_id, "amount": 250})).json()["id"]

    class Stolen:
        async def refund(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult:
            await execute(container, "UPDATE refunds SET lease_token = gen_random_uuid() WHERE id = %s", reference)
            return await container.processors["simulator"].refund(reference, authorization, amount)

        async def lookup_operation(self, reference: str) -> ProcessorResult:
            return await container.processors["simulator"].lookup_operation(reference)

    assert await pump(container, {"simulator": Stolen()}).run_batch(100) == 1
    assert (await fetch(api, shop, refund_id))["status"] == "pending"
    assert (await get(api, shop, payment_id))["amount_refunded"] == 0
    # The next claimer looks it up and finds it done, once.
    await make_due(container, refund_id)
    await drain_refunds(pump(container))
    assert (await fetch(api, shop, refund_id))["status"] == "succeeded"
    assert (await get(api, shop, payment_id))["amount_refunded"] == 250
    await assert_ledger_clean(container)


async def make_due(container: Any, refund_id: str) -> None:
    await execute(container, "UPDATE refunds SET next_run_at = now() WHERE id = %s", refund_id)


def test_the_worker_runs_a_refund_pump(container: Any) -> None:
    from tender.worker.runner import Worker

    assert "refunds" in [p.name for p in Worker(container).pumps]


async def test_several_workers_share_one_backlog(api: Any, container: Any, shop: Any, simulator_url: str) -> None:
    payments = [await captured(api, container, shop, number) for number in (CREDIT, DEBIT) * 3]
    made = [
        (await refund(api, shop, {"payment": p, "amount": amount})).json()["id"]
        for p in payments
        for amount in (1000, 700)
    ]
    pumps = [pump(container) for _ in range(3)]

    async def work(p: RefundPump) -> None:
        for _ in range(10):
            await p.run_batch(3)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(work(p) for p in pumps))
    await drain_refunds(pump(container))
    rows = await query(container, "SELECT status FROM refunds WHERE id = ANY(%s)", made)
    assert [r["status"] for r in rows] == ["succeeded"] * len(made)
    for refund_id in made:
        assert len(await sim_refunds(simulator_url, refund_id)) == 1
    for p in payments:
        assert (await get(api, shop, p))["amount_refunded"] == 1700
    assert await balances(container, shop) == {
        "merchant_pending": 3 * (2375 - 1700),
        "merchant_available": 3 * (2425 - 1700),
    }
    await assert_ledger_clean(container)


async def test_a_waiting_refund_settles_with_its_capture(api: Any, container: Any, shop: Any) -> None:
    from tender.services.settlement import settle_group

    payment_id = await captured(api, container, shop, CREDIT)
    r = await refund(api, shop, {"payment": payment_id, "amount": 1000})
    await drain_refunds(pump(container))
    assert (await fetch(api, shop, r.json()["id"]))["status"] == "succeeded"
    [capture] = await query(
        container, "SELECT payment_date FROM payables WHERE payment_id = %s AND type = 'payment'", payment_id
    )
    # This merchant's group only: other tests' payables are left as they are.
    assert await settle_group(container.db, shop.merchant.id, "BRL", capture["payment_date"]) is not None
    rows = await query(container, "SELECT type, status, settlement_id FROM payables WHERE payment_id = %s", payment_id)
    assert {(x["type"], x["status"]) for x in rows} == {("payment", "paid"), ("refund", "paid")}
    assert len({x["settlement_id"] for x in rows}) == 1 and rows[0]["settlement_id"] is not None
    assert await balances(container, shop) == {"merchant_pending": 0, "merchant_available": 2375 - 1000}
    await assert_ledger_clean(container)
