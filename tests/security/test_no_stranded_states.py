"""Finding 3 (audit): "no non-final state may be left without a scheduled next step". Every path a payment can
take leaves each non-final payment with next_run_at; waiting for the shopper or for a capture ends (Tender voids
it); housekeeping finds and reschedules stranded rows of every table with due rows. Real PostgreSQL, the real
simulator (in process, notifications lost unless a test posts one), the API in process."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tender.services import maintenance
from tender.services.merchants import create_merchant
from tests.support.api import auth
from tests.support.payments import (
    attempt_of,
    authorized,
    authorizer,
    drain,
    get,
    make_due,
    notification_for,
    pay,
    post,
    shopper_decides,
    three_ds_payment,
)

pytestmark = pytest.mark.integration

FINAL = ("succeeded", "failed", "canceled")


async def rows(container: Any, query: str, *params: Any) -> list[dict[str, Any]]:
    async with container.db.connection() as conn:
        cur = await conn.execute(query, params)
        return [dict(r) for r in await cur.fetchall()]


async def execute(container: Any, query: str, *params: Any) -> None:
    async with container.db.connection() as conn:
        await conn.execute(query, params)


async def stranded_payments(container: Any, merchant_id: str) -> list[dict[str, Any]]:
    return await rows(
        container,
        "SELECT id, status FROM payments WHERE merchant_id = %s AND status <> ALL(%s) AND next_run_at IS NULL",
        merchant_id,
        list(FINAL),
    )


async def test_every_path_leaves_each_non_final_payment_scheduled(
    api: Any, container: Any, simulator_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="tender.services.payment_operations")
    shop = await create_merchant(container.db, "Audit shop")
    a = authorizer(container)
    # Authorized for a later capture (worker); then one captured, one canceled, one left waiting.
    waiting = await authorized(api, container, shop)
    captured = await authorized(api, container, shop)
    canceled = await authorized(api, container, shop)
    await post(api, shop, f"/v1/payments/{captured['id']}/capture")
    await post(api, shop, f"/v1/payments/{canceled['id']}/cancel")
    # Declined, succeeded, 3-D Secure waiting, 3-D Secure approved by look-up and by notification.
    await pay(api, shop, "4000000000000002")
    await pay(api, shop)
    pending = await three_ds_payment(api, container, shop)
    by_lookup = await three_ds_payment(api, container, shop)
    await shopper_decides(simulator_url, by_lookup, "approve")
    await make_due(container, by_lookup["id"])
    # A manual-capture 3-D Secure payment approved by notification: requires_capture outside the pump.
    created = await pay(api, shop, "4000002760003184", capture=False, return_url="https://shop.example/back")
    await drain(a)
    by_notification = await get(api, shop, created["id"])
    await shopper_decides(simulator_url, by_notification, "approve")
    body, headers = await notification_for(simulator_url, (await attempt_of(container, created["id"]))["id"])
    assert (await api.post("/webhooks/simulator", content=body, headers=headers)).json()["outcome"] == "applied"
    assert (await get(api, shop, created["id"]))["status"] == "requires_capture"
    assert await stranded_payments(container, shop.merchant.id) == []  # straight from the notification
    # The race of finding 3: a cancel after an approved challenge whose notification was lost.
    raced = await three_ds_payment(api, container, shop)
    await shopper_decides(simulator_url, raced, "approve")
    await post(api, shop, f"/v1/payments/{raced['id']}/cancel")
    await drain(a)

    statuses = {p: (await get(api, shop, p))["status"] for p in (waiting["id"], pending["id"], created["id"])}
    assert statuses == {
        waiting["id"]: "requires_capture",
        pending["id"]: "requires_action",
        created["id"]: "requires_capture",
    }
    assert (await get(api, shop, by_lookup["id"]))["status"] == "succeeded"
    assert (await get(api, shop, raced["id"]))["status"] == "succeeded"
    assert await stranded_payments(container, shop.merchant.id) == []
    # Waiting for the merchant: the next step is the capture window's end, not a busy loop.
    [row] = await rows(container, "SELECT next_run_at - updated AS wait FROM payments WHERE id = %s", waiting["id"])
    assert timedelta(days=6, hours=23) < row["wait"] <= timedelta(days=7)
    # Each path scheduled its own next step: the pump's last-resort guard never had to.
    assert not [r for r in caplog.records if "without a next step" in r.getMessage()]


async def test_a_payment_never_approved_by_its_shopper_is_voided_after_the_action_expiry(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await three_ds_payment(api, container, merchant)
    await execute(
        container,
        "UPDATE payments SET updated = now() - interval '25 hours', next_run_at = now() WHERE id = %s",
        p["id"],
    )
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["failure_code"], done["next_action"]) == ("canceled", "abandoned", None)
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        record = (await sim.get(f"/v1/authorizations/{(await attempt_of(container, p['id']))['id']}")).json()
    assert record["status"] == "canceled"  # voided at the processor, not just in Tender
    assert await stranded_payments(container, merchant.merchant.id) == []


async def test_a_shopper_approving_as_tender_voids_ends_succeeded(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    """The expiry's look-up sees the approval first (its notification lost): the truth wins, no void."""
    p = await three_ds_payment(api, container, merchant)
    await shopper_decides(simulator_url, p, "approve")
    await execute(
        container,
        "UPDATE payments SET updated = now() - interval '25 hours', next_run_at = now() WHERE id = %s",
        p["id"],
    )
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount_captured"], done["failure_code"]) == ("succeeded", 2500, None)


async def test_an_authorization_not_captured_within_the_window_is_voided(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await authorized(api, container, merchant)
    await execute(
        container, "UPDATE payments SET updated = now() - interval '8 days', next_run_at = now() WHERE id = %s", p["id"]
    )
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["failure_code"], done["amount_captured"]) == ("canceled", "authorization_expired", 0)
    assert (await attempt_of(container, p["id"], "cancel"))["status"] == "approved"
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        record = (await sim.get(f"/v1/authorizations/{(await attempt_of(container, p['id']))['id']}")).json()
    assert record["status"] == "canceled"


async def test_a_capture_asked_for_at_the_windows_end_goes_first(api: Any, container: Any, merchant: Any) -> None:
    """Tender's void never runs beside a capture in progress: the merchant's capture wins."""
    p = await authorized(api, container, merchant)
    await execute(
        container, "UPDATE payments SET updated = now() - interval '8 days', next_run_at = now() WHERE id = %s", p["id"]
    )
    assert (await post(api, merchant, f"/v1/payments/{p['id']}/capture")).status_code == 202
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount_captured"], done["failure_code"]) == ("succeeded", 2500, None)


async def test_housekeeping_reschedules_stranded_rows_of_every_table(
    api: Any, container: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.webhooks import make_endpoint

    shop = await create_merchant(container.db, "Stranded shop")
    h = auth(shop.secret_key)
    endpoint = await make_endpoint(container, shop, "https://shop.example/hooks")
    try:
        held = await authorized(api, container, shop)  # requires_capture
        paid = await pay(api, shop)
        await drain(authorizer(container))
        refund = await api.post("/v1/refunds", json={"payment": paid["id"], "amount": 100}, headers=h)
        assert refund.status_code in (200, 201, 202), refund.text
        session = await api.post(
            "/v1/checkout/sessions",
            json={
                "amount": 2500,
                "currency": "BRL",
                "reference": "stranded-1",
                "success_url": "https://shop.example/ok",
                "cancel_url": "https://shop.example/cart",
            },
            headers=h,
        )
        assert session.status_code == 201, session.text
        [delivery] = await rows(
            container,
            "SELECT id FROM webhook_deliveries WHERE endpoint_id = %s AND status = 'pending' LIMIT 1",
            endpoint["id"],
        )
        # A bug (or a hand edit) drops their schedules.
        await execute(container, "UPDATE payments SET next_run_at = NULL WHERE id = %s", held["id"])
        await execute(container, "UPDATE refunds SET next_run_at = NULL WHERE id = %s", refund.json()["id"])
        await execute(container, "UPDATE checkout_sessions SET next_run_at = NULL WHERE id = %s", session.json()["id"])
        await execute(container, "UPDATE webhook_deliveries SET next_run_at = NULL WHERE id = %s", delivery["id"])

        with caplog.at_level(logging.WARNING, logger="tender.services.maintenance"):
            found = await maintenance.reschedule_stranded(container.db)

        assert all(found[t] >= 1 for t in ("payments", "refunds", "checkout_sessions", "webhook_deliveries"))
        logged = " ".join(r.getMessage() for r in caplog.records)
        for object_id in (held["id"], refund.json()["id"], session.json()["id"], delivery["id"]):
            assert object_id in logged
        [p] = await rows(container, "SELECT next_run_at <= now() AS due FROM payments WHERE id = %s", held["id"])
        [s] = await rows(
            container, "SELECT next_run_at = expires_at AS at_expiry FROM checkout_sessions WHERE id = %s",
            session.json()["id"],
        )  # fmt: skip
        assert p["due"] and s["at_expiry"]  # a session is not expired early: due at its own expiry
        # The pump takes the payment from there: a look-up, then the capture window.
        await drain(authorizer(container))
        assert (await get(api, shop, held["id"]))["status"] == "requires_capture"
        assert await stranded_payments(container, shop.merchant.id) == []
    finally:
        await execute(container, "DELETE FROM webhook_endpoints WHERE id = %s", endpoint["id"])
