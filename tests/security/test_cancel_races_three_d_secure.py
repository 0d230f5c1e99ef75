"""Finding 3: "A cancel racing a completed 3-D Secure, when the processor's notification is lost, strands a captured
payment." After a refused cancel or capture, Tender looks the authorization up until the processor's truth is
applied, with the payable, ledger entry and events of any capture. Real PostgreSQL, the real simulator (in
process; it has no notify_url in tests, so every notification is lost), the API in process."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tender.domain.retry import RetryPolicy
from tender.processors.simulator import SimulatorProcessor
from tender.worker.pumps import PaymentPump
from tests.support.money import assert_ledger_clean, entries_of, payment_payables
from tests.support.payments import (
    attempt_of,
    authorized,
    authorizer,
    drain,
    get,
    make_due,
    post,
    shopper_decides,
    three_ds_payment,
)
from tests.support.serve import free_port

pytestmark = pytest.mark.integration


async def schedule_of(container: Any, payment_id: str) -> dict[str, Any]:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT status, next_run_at FROM payments WHERE id = %s", (payment_id,))
        row = await cur.fetchone()
    assert row is not None
    return dict(row)


async def event_types(container: Any, payment_id: str) -> list[str]:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT type FROM events WHERE object_id = %s ORDER BY sequence", (payment_id,))
        return [r["type"] for r in await cur.fetchall()]


async def test_cancel_after_an_approved_challenge_whose_notification_was_lost_ends_succeeded(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await three_ds_payment(api, container, merchant)
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        assert (await sim.get("/_sim/config")).json()["notify_url"] is None  # the notification is lost
    back = await shopper_decides(simulator_url, p, "approve")  # the simulator charges it now
    assert back.status_code == 303
    assert (await post(api, merchant, f"/v1/payments/{p['id']}/cancel")).status_code == 202

    await drain(authorizer(container))

    cancel = await attempt_of(container, p["id"], "cancel")
    assert (cancel["status"], cancel["failure_code"]) == ("declined", "already_captured")
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount_captured"], done["next_action"]) == ("succeeded", 2500, None)
    assert (done["failure_code"], done["failure_message"]) == (None, None)  # the refused cancel is not a failure
    [payable] = await payment_payables(container, p["id"])
    assert (payable["type"], payable["amount"]) == ("payment", 2500)
    [entry] = await entries_of(container, p["id"])
    assert entry["amount"] == 2500
    assert (await event_types(container, p["id"]))[-1] == "payment.succeeded"
    assert (await schedule_of(container, p["id"]))["next_run_at"] is None  # final: nothing more to do
    await assert_ledger_clean(container)


async def test_a_refused_cancel_keeps_a_look_up_scheduled_while_the_processor_is_unreachable(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    """The look-up after the refusal fails (outage): it stays scheduled, and applies the truth once it answers."""
    p = await three_ds_payment(api, container, merchant)
    await shopper_decides(simulator_url, p, "approve")
    assert (await post(api, merchant, f"/v1/payments/{p['id']}/cancel")).status_code == 202
    a = authorizer(container)
    await a.run_batch(1000)  # the cancel: refused, already captured
    assert (await schedule_of(container, p["id"]))["next_run_at"] is not None
    await make_due(container, p["id"])
    nowhere = SimulatorProcessor(f"http://127.0.0.1:{free_port()}", timeout=1.0)  # nothing listens there
    blind = PaymentPump(
        container.db, container.vault, {"simulator": nowhere}, lease_seconds=30,
        retry=RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0),
    )  # fmt: skip
    try:
        assert await blind.run_batch(1000) >= 1
    finally:
        await nowhere.aclose()
    state = await schedule_of(container, p["id"])
    assert (state["status"], state["next_run_at"] is not None) == ("requires_action", True)
    await drain(a)
    assert (await get(api, merchant, p["id"]))["status"] == "succeeded"


async def test_a_refused_capture_of_an_authorization_voided_at_the_processor_ends_canceled(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await authorized(api, container, merchant)
    authorization = (await attempt_of(container, p["id"]))["id"]
    async with httpx.AsyncClient(base_url=simulator_url) as sim:  # voided behind Tender's back (e.g. expired)
        voided = await sim.post(
            f"/v1/authorizations/{authorization}/cancel",
            json={"reference": "void-" + authorization},
            headers={"Idempotency-Key": "void-" + authorization},
        )
        assert voided.json()["status"] == "succeeded"
    assert (await post(api, merchant, f"/v1/payments/{p['id']}/capture")).status_code == 202

    await drain(authorizer(container))

    assert (await attempt_of(container, p["id"], "capture"))["status"] == "declined"
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount_captured"]) == ("canceled", 0)
    assert await payment_payables(container, p["id"]) == []
    assert (await event_types(container, p["id"]))[-1] == "payment.canceled"


async def test_a_refused_cancel_of_a_partly_captured_authorization_books_what_the_processor_captured(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await authorized(api, container, merchant)
    authorization = (await attempt_of(container, p["id"]))["id"]
    async with httpx.AsyncClient(base_url=simulator_url) as sim:  # captured behind Tender's back
        captured = await sim.post(
            f"/v1/authorizations/{authorization}/capture",
            json={"reference": "cap-" + authorization, "amount": 1000},
            headers={"Idempotency-Key": "cap-" + authorization},
        )
        assert captured.json()["status"] == "succeeded"
    assert (await post(api, merchant, f"/v1/payments/{p['id']}/cancel")).status_code == 202

    await drain(authorizer(container))

    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount_captured"]) == ("succeeded", 1000)
    [payable] = await payment_payables(container, p["id"])
    assert payable["amount"] == 1000
    await assert_ledger_clean(container)
