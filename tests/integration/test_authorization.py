"""The payment pump's authorizations against real PostgreSQL and the real simulator (in process): every test card's
outcome, crash recovery through open attempts, leases, and several workers on one backlog."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tender.worker.pumps import PaymentPump
from tests.support.payments import authorizer, drain, get, pay, sim_records

pytestmark = pytest.mark.integration

CARD_OUTCOMES = [
    ("4242424242424242", "succeeded", None, None, "visa", "credit"),
    ("5555555555554444", "succeeded", None, None, "mastercard", "credit"),
    ("4000056655665556", "succeeded", None, None, "visa", "debit"),
    ("4000000000000002", "failed", "card_declined", "generic_decline", "visa", "credit"),
    ("4000000000009995", "failed", "card_declined", "insufficient_funds", "visa", "credit"),
    ("4000000000009987", "failed", "card_declined", "lost_card", "visa", "credit"),
    ("4000000000000069", "failed", "expired_card", None, "visa", "credit"),
    ("4000000000000127", "failed", "incorrect_cvc", None, "visa", "credit"),
    ("4000002760003184", "requires_action", None, None, "visa", "credit"),
    ("6011111111111117", "succeeded", None, None, "discover", "credit"),  # any other Luhn-valid number
]


@pytest.mark.parametrize(("number", "status", "failure", "decline", "brand", "funding"), CARD_OUTCOMES)
async def test_each_test_card_reaches_its_outcome(
    api: Any,
    container: Any,
    merchant: Any,
    simulator_app: Any,
    number: str,
    status: str,
    failure: str | None,
    decline: str | None,
    brand: str,
    funding: str,
) -> None:
    created = await pay(api, merchant, number)
    await drain(authorizer(container))
    p = await get(api, merchant, created["id"])
    assert p["status"] == status
    assert (p["failure_code"], p["decline_code"]) == (failure, decline)
    assert (p["payment_method"]["card"]["brand"], p["payment_method"]["card"]["funding"]) == (brand, funding)
    if status == "succeeded":
        assert p["amount_captured"] == p["amount"]
    if status == "failed":
        assert p["failure_message"]
    if status == "requires_action":
        assert p["next_action"]["type"] == "redirect_to_url"
        assert p["next_action"]["url"].startswith("http://simulator.test/3ds/")
    assert p["updated"] >= p["created"]
    assert len(await sim_records(simulator_app, created["id"])) == 1


async def test_manual_capture_ends_in_requires_capture(api: Any, container: Any, merchant: Any) -> None:
    created = await pay(api, merchant, capture=False)
    await drain(authorizer(container))
    p = await get(api, merchant, created["id"])
    assert p["status"] == "requires_capture"
    assert p["amount_captured"] == 0


async def test_cvc_is_erased_once_authorization_ends(api: Any, container: Any, merchant: Any) -> None:
    created = await pay(api, merchant)
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT v.id, v.cvc_ct FROM vault_cards v JOIN payments p ON p.card_id = v.id WHERE p.id = %s",
            (created["id"],),
        )
        before = await cur.fetchone()
    assert before["cvc_ct"] is not None
    assert container.vault.decrypt(before["cvc_ct"], row_id=before["id"] + ":cvc") == "123"
    await drain(authorizer(container))
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT cvc_ct FROM vault_cards WHERE id = %s", (before["id"],))
        assert (await cur.fetchone())["cvc_ct"] is None


async def _crash_after_claim(container: Any, payment_id: str) -> str:
    """What a worker leaves behind when killed mid-call: a claimed payment and an open attempt."""
    from tender.domain.ids import ATTEMPT, new_id

    attempt_id = new_id(ATTEMPT)
    async with container.db.transaction() as conn:
        await conn.execute(
            "UPDATE payments SET next_run_at = now() + interval '1 hour', lease_token = gen_random_uuid(),"
            " tries = tries + 1 WHERE id = %s",
            (payment_id,),
        )
        await conn.execute(
            "INSERT INTO payment_attempts (id, payment_id, operation, processor, status)"
            " VALUES (%s, %s, 'authorize', 'simulator', 'pending')",
            (attempt_id, payment_id),
        )
    return attempt_id


async def _expire_lease(container: Any, payment_id: str) -> None:
    async with container.db.connection() as conn:
        await conn.execute("UPDATE payments SET next_run_at = now() WHERE id = %s", (payment_id,))


async def test_crash_after_the_processor_charged_is_resolved_by_lookup_without_charging_again(
    api: Any, container: Any, merchant: Any, simulator_app: Any
) -> None:
    from tender.processors.base import AuthorizeRequest, CardData

    created = await pay(api, merchant)
    attempt_id = await _crash_after_claim(container, created["id"])
    # The dead worker's call did reach the processor:
    result = await container.processors["simulator"].authorize(
        AuthorizeRequest(
            reference=attempt_id,
            payment_id=created["id"],
            amount=2500,
            currency="BRL",
            capture=True,
            card=CardData("4242424242424242", 10, 2030, "123", "Luke"),
        )
    )
    assert result.outcome.value == "approved"
    a = authorizer(container)
    await drain(a)
    assert (await get(api, merchant, created["id"]))["status"] == "processing"  # lease not yet expired
    await _expire_lease(container, created["id"])
    await drain(a)
    p = await get(api, merchant, created["id"])
    assert p["status"] == "succeeded"
    records = await sim_records(simulator_app, created["id"])
    assert len(records) == 1 and records[0]["reference"] == attempt_id
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT id, status FROM payment_attempts WHERE payment_id = %s", (created["id"],))
        attempts = await cur.fetchall()
    assert [(r["id"], r["status"]) for r in attempts] == [(attempt_id, "approved")]


async def test_crash_before_the_call_arrived_resends_under_the_same_key(
    api: Any, container: Any, merchant: Any, simulator_app: Any
) -> None:
    created = await pay(api, merchant)
    lost = await _crash_after_claim(container, created["id"])
    await _expire_lease(container, created["id"])
    await drain(authorizer(container))
    assert (await get(api, merchant, created["id"]))["status"] == "succeeded"
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT id, status FROM payment_attempts WHERE payment_id = %s", (created["id"],))
        attempts = [(r["id"], r["status"]) for r in await cur.fetchall()]
    assert attempts == [(lost, "approved")]
    records = await sim_records(simulator_app, created["id"])
    assert [r["reference"] for r in records] == [lost]


async def test_a_worker_whose_lease_was_taken_over_writes_nothing(api: Any, container: Any, merchant: Any) -> None:
    from tender.domain.transitions import PaymentChange
    from tender.store.claims import claim_due
    from tender.store.payments import update_after_processing

    created = await pay(api, merchant)
    async with container.db.transaction() as conn:
        first = await claim_due(conn, "payments", columns=["status"], limit=10_000, lease_seconds=0.0)
    assert created["id"] in {r["id"] for r in first.rows}
    async with container.db.transaction() as conn:  # the lease (0 s) has run out: a second worker claims
        second = await claim_due(conn, "payments", columns=["status"], limit=10_000, lease_seconds=60.0)
    assert created["id"] in {r["id"] for r in second.rows}
    async with container.db.connection() as conn:  # give the others back
        await conn.execute(
            "UPDATE payments SET next_run_at = now(), lease_token = NULL WHERE id = ANY(%s) AND id <> %s",
            ([r["id"] for r in second.rows], created["id"]),
        )
    async with container.db.transaction() as conn:
        written = await update_after_processing(
            conn,
            first.token,
            [
                PaymentChange(
                    id=created["id"],
                    expected_status="processing",
                    status="failed",
                    amount_captured=0,
                    failure_code="x",
                    decline_code=None,
                    failure_message=None,
                    next_action=None,
                    processor_reference=None,
                    next_run_at=None,
                    last_error=None,
                    reset_tries=True,
                    updated=created["created"],
                )
            ],
        )
    assert written == set()
    assert (await get(api, merchant, created["id"]))["status"] == "processing"


async def test_concurrent_claimers_never_share_a_row(api: Any, container: Any, merchant: Any) -> None:
    from tender.store.claims import claim_due

    for _ in range(30):
        await pay(api, merchant)

    async def claim() -> set[str]:
        async with container.db.transaction() as conn:
            c = await claim_due(conn, "payments", columns=[], limit=7, lease_seconds=60)
        return {r["id"] for r in c.rows}

    claims = await asyncio.gather(*(claim() for _ in range(6)))
    seen: set[str] = set()
    for ids in claims:
        assert not (seen & ids)
        seen |= ids
    async with container.db.connection() as conn:  # give them back for the other tests
        await conn.execute(
            "UPDATE payments SET next_run_at = now(), lease_token = NULL WHERE id = ANY(%s)", (list(seen),)
        )


async def test_a_live_batch_keeps_its_lease_and_a_dead_one_loses_it(api: Any, container: Any, merchant: Any) -> None:
    """`held` renews the lease while the batch works: no one takes its rows, however long it takes. Once it
    stops renewing (the worker died), the rows fall due one lease later."""
    from tender.store.claims import claim_due
    from tender.worker.pump import held

    created = await pay(api, merchant)

    async def others_can_claim() -> bool:
        async with container.db.transaction() as conn:
            c = await claim_due(conn, "payments", columns=[], limit=10_000, lease_seconds=60)
            taken = created["id"] in {r["id"] for r in c.rows}
            await conn.execute(  # give back whatever else it took
                "UPDATE payments SET next_run_at = now(), lease_token = NULL WHERE lease_token = %s AND id <> %s",
                (c.token, created["id"]),
            )
        return taken

    async with container.db.transaction() as conn:
        claim = await claim_due(conn, "payments", columns=[], limit=10_000, lease_seconds=0.6)
    async with container.db.connection() as conn:  # keep only ours under this claim
        await conn.execute(
            "UPDATE payments SET next_run_at = now(), lease_token = NULL WHERE lease_token = %s AND id <> %s",
            (claim.token, created["id"]),
        )
    claim.rows[:] = [r for r in claim.rows if r["id"] == created["id"]]
    assert claim.rows

    async with held(container.db, "payments", claim.token, [r["id"] for r in claim.rows], 0.6):
        for _ in range(6):  # 1.8 s: three leases' worth
            await asyncio.sleep(0.3)
            assert not await others_can_claim()
    await asyncio.sleep(0.8)  # no more renewals: the lease runs out
    assert await others_can_claim()
    async with container.db.connection() as conn:  # due again for the other tests' pumps
        await conn.execute(
            "UPDATE payments SET next_run_at = now(), lease_token = NULL WHERE id = %s", (created["id"],)
        )


async def test_two_authorizers_on_one_backlog_charge_each_payment_once(
    api: Any, container: Any, merchant: Any, simulator_app: Any
) -> None:
    ids = [(await pay(api, merchant, reference=f"backlog-{i}"))["id"] for i in range(60)]
    a, b = authorizer(container), authorizer(container)

    async def run(x: PaymentPump) -> None:
        for _ in range(40):
            if await x.run_batch(7) == 0:
                return

    await asyncio.gather(run(a), run(b), run(a))
    await drain(a)
    for payment_id in ids:
        assert (await get(api, merchant, payment_id))["status"] == "succeeded"
        assert len(await sim_records(simulator_app, payment_id)) == 1
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT payment_id, count(*) AS n FROM payment_attempts WHERE payment_id = ANY(%s) GROUP BY 1", (ids,)
        )
        assert {r["n"] for r in await cur.fetchall()} == {1}


async def test_a_transient_failure_is_retried_under_the_same_key_and_charged_once(
    api: Any, container: Any, merchant: Any, simulator_app: Any
) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=simulator_app), base_url="http://s") as sim:
        assert (await sim.post("/_sim/config", json={"error_rate": 1.0})).status_code == 200
        try:
            created = await pay(api, merchant)
            a = authorizer(container)
            await a.run_batch(100)
            p = await get(api, merchant, created["id"])
            assert p["status"] == "processing"
        finally:
            await sim.post("/_sim/config", json={"error_rate": 0.0})
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT a.status, a.calls, a.last_error, p.last_error AS payment_error FROM payment_attempts a"
            " JOIN payments p ON p.id = a.payment_id WHERE a.payment_id = %s",
            (created["id"],),
        )
        row = await cur.fetchone()
    assert (row["status"], row["calls"]) == ("pending", 1)
    assert "transient" in row["last_error"] and row["payment_error"] == row["last_error"]
    await drain(a)
    assert (await get(api, merchant, created["id"]))["status"] == "succeeded"
    assert len(await sim_records(simulator_app, created["id"])) == 1
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT status, calls FROM payment_attempts WHERE payment_id = %s", (created["id"],))
        assert [(r["status"], r["calls"]) for r in await cur.fetchall()] == [("approved", 2)]


async def test_a_bug_on_one_payment_does_not_sink_its_batch(api: Any, container: Any, merchant: Any) -> None:
    """A processor that raises (a bug, not a network fault) for one payment: the rest of the batch completes."""
    from tender.domain.retry import Jitter, RetryPolicy
    from tender.processors.base import AuthorizeRequest, ProcessorResult

    real = container.processors["simulator"]

    class Exploding:
        name = "simulator"

        async def authorize(self, request: AuthorizeRequest) -> ProcessorResult:
            if request.amount == 4321:
                raise RuntimeError("boom")
            return await real.authorize(request)

        async def lookup(self, reference: str) -> ProcessorResult:
            return await real.lookup(reference)

        async def aclose(self) -> None: ...

    bad = await pay(api, merchant, amount=4321)
    good = await pay(api, merchant, amount=1234)
    # A first backoff of 30-60 s: the default's full jitter can be a few milliseconds, due again by the check below.
    retry = RetryPolicy(base_seconds=60, jitter=Jitter.EQUAL)
    a = PaymentPump(container.db, container.vault, {"simulator": Exploding()}, lease_seconds=30, retry=retry)
    await a.run_batch(1000)
    assert (await get(api, merchant, good["id"]))["status"] == "succeeded"
    assert (await get(api, merchant, bad["id"]))["status"] == "processing"
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT last_error, next_run_at > now() AS later FROM payments WHERE id = %s", (bad["id"],)
        )
        row = await cur.fetchone()
    assert row["last_error"] == "internal error: RuntimeError" and row["later"]
    await _expire_lease(container, bad["id"])
    await drain(authorizer(container))  # the real processor: it completes
    assert (await get(api, merchant, bad["id"]))["status"] == "succeeded"
