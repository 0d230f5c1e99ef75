"""Capture, cancel, 3-D Secure and inbound notifications, dead letters: real PostgreSQL, the real simulator
served on a loopback port, the API in process."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

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


# -- capture and cancel ------------------------------------------------------------------------


async def test_full_capture(api: Any, container: Any, merchant: Any, simulator_url: str) -> None:
    p = await authorized(api, container, merchant)
    r = await post(api, merchant, f"/v1/payments/{p['id']}/capture", **{"Idempotency-Key": "cap-1"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "requires_capture"  # queued for the worker
    assert r.headers["location"] == f"/v1/payments/{p['id']}"
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount_captured"]) == ("succeeded", 2500)
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        ops = (await sim.get("/_sim/operations")).json()["data"]
    captures = [o for o in ops if o.get("reference") == (await attempt_of(container, p["id"], "capture"))["id"]]
    assert len(captures) == 1


async def test_partial_capture_captures_only_that_amount(api: Any, container: Any, merchant: Any) -> None:
    p = await authorized(api, container, merchant)
    r = await post(api, merchant, f"/v1/payments/{p['id']}/capture", {"amount": 1000})
    assert r.status_code == 202
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount"], done["amount_captured"]) == ("succeeded", 2500, 1000)


@pytest.mark.parametrize(
    ("body", "param"),
    [({"amount": 2501}, "amount"), ({"amount": 0}, "amount"), ({"amount": 1.5}, "amount"), ({"extra": 1}, "extra")],
)
async def test_bad_capture_requests(api: Any, container: Any, merchant: Any, body: dict[str, Any], param: str) -> None:
    p = await authorized(api, container, merchant)
    r = await post(api, merchant, f"/v1/payments/{p['id']}/capture", body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param
    assert (await attempt_of(container, p["id"], "authorize"))["status"] == "approved"


async def test_capture_in_the_wrong_state_or_twice_is_refused(api: Any, container: Any, merchant: Any) -> None:
    processing = await pay(api, merchant)
    r = await post(api, merchant, f"/v1/payments/{processing['id']}/capture")
    assert r.status_code == 400 and r.json()["error"]["code"] == "payment_unexpected_state"
    p = await authorized(api, container, merchant)
    assert (await post(api, merchant, f"/v1/payments/{p['id']}/capture")).status_code == 202
    again = await post(api, merchant, f"/v1/payments/{p['id']}/capture")
    assert again.status_code == 400 and again.json()["error"]["code"] == "payment_operation_in_progress"
    other = await post(api, merchant, f"/v1/payments/{p['id']}/cancel")
    assert other.status_code == 400
    await drain(authorizer(container))
    late = await post(api, merchant, f"/v1/payments/{p['id']}/capture")
    assert late.status_code == 400 and "succeeded" in late.json()["error"]["message"]


async def test_capture_of_another_merchants_payment_is_404(api: Any, container: Any, merchant: Any) -> None:
    from tender.services.merchants import create_merchant

    p = await authorized(api, container, merchant)
    other = await create_merchant(container.db, "Other")
    r = await post(api, other, f"/v1/payments/{p['id']}/capture")
    assert r.status_code == 404


async def test_cancel_an_authorized_payment(api: Any, container: Any, merchant: Any, simulator_url: str) -> None:
    p = await authorized(api, container, merchant)
    r = await post(api, merchant, f"/v1/payments/{p['id']}/cancel")
    assert r.status_code == 202
    assert (await post(api, merchant, f"/v1/payments/{p['id']}/cancel")).status_code == 202  # harmless twice
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount_captured"]) == ("canceled", 0)
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        record = (await sim.get(f"/v1/authorizations/{(await attempt_of(container, p['id']))['id']}")).json()
    assert record["status"] == "canceled"
    assert (await post(api, merchant, f"/v1/payments/{p['id']}/capture")).status_code == 400


# -- 3-D Secure ---------------------------------------------------------------------------------


async def test_3ds_result_is_found_by_lookup_when_no_notification_comes(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await three_ds_payment(api, container, merchant)
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT next_run_at - now() AS wait FROM payments WHERE id = %s", (p["id"],))
        assert (await cur.fetchone())["wait"] > timedelta(seconds=30)  # looked up later, not hammered
    back = await shopper_decides(simulator_url, p, "approve")
    assert back.status_code == 303 and back.headers["location"].startswith("https://shop.example/back")
    await make_due(container, p["id"])  # the look-up time has come
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["next_action"]) == ("succeeded", None)


async def test_3ds_still_waiting_is_looked_up_again_later(api: Any, container: Any, merchant: Any) -> None:
    p = await three_ds_payment(api, container, merchant)
    await make_due(container, p["id"])
    await drain(authorizer(container))
    assert (await get(api, merchant, p["id"]))["status"] == "requires_action"
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT next_run_at IS NOT NULL AS scheduled FROM payments WHERE id = %s", (p["id"],))
        assert (await cur.fetchone())["scheduled"]


async def test_cancel_while_waiting_for_the_shopper(api: Any, container: Any, merchant: Any) -> None:
    p = await three_ds_payment(api, container, merchant)
    assert (await post(api, merchant, f"/v1/payments/{p['id']}/cancel")).status_code == 202
    await drain(authorizer(container))
    assert (await get(api, merchant, p["id"]))["status"] == "canceled"
    assert (await attempt_of(container, p["id"]))["finished"] is not None


# -- inbound notifications ----------------------------------------------------------------------


async def test_a_3ds_notification_decides_the_payment_once(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await three_ds_payment(api, container, merchant)
    await shopper_decides(simulator_url, p, "decline")
    reference = (await attempt_of(container, p["id"]))["id"]
    body, headers = await notification_for(simulator_url, reference)
    first = await api.post("/webhooks/simulator", content=body, headers=headers)
    assert first.status_code == 200 and first.json()["outcome"] == "applied"
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["failure_code"]) == ("failed", "authentication_failed")
    again = await api.post("/webhooks/simulator", content=body, headers=headers)
    assert again.json()["outcome"] == "duplicate"
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM processor_events WHERE payload->'data'->>'reference' = %s", (reference,)
        )
        assert (await cur.fetchone())["n"] == 1


async def test_notifications_never_move_a_status_backwards(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await three_ds_payment(api, container, merchant)
    reference = (await attempt_of(container, p["id"]))["id"]
    stale_body, stale_headers = await notification_for(simulator_url, reference)  # still action_required
    await shopper_decides(simulator_url, p, "approve")
    body, headers = await notification_for(simulator_url, reference)
    assert (await api.post("/webhooks/simulator", content=body, headers=headers)).json()["outcome"] == "applied"
    assert (await get(api, merchant, p["id"]))["status"] == "succeeded"
    # Out of order: the older "action required" arrives last; then a forged-looking but validly signed decline.
    late = await api.post("/webhooks/simulator", content=stale_body, headers=stale_headers)
    assert late.json()["outcome"] == "stale"
    declined_body, declined_headers = await notification_for(simulator_url, reference, status="declined")
    assert (await api.post("/webhooks/simulator", content=declined_body, headers=declined_headers)).json()[
        "outcome"
    ] == "stale"
    assert (await get(api, merchant, p["id"]))["status"] == "succeeded"


async def test_a_notification_before_the_workers_answer_wins_and_the_worker_backs_off(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    """The processor's notification overtakes our own call: the worker's late write must not undo it."""
    from tender.processors.base import AuthorizeRequest, CardData

    created = await pay(api, merchant)
    attempt_id = "att_" + uuid.uuid4().hex
    async with container.db.transaction() as conn:  # what a claim leaves while its call is in flight
        await conn.execute(
            "UPDATE payments SET next_run_at = now() + interval '1 hour',"
            " lease_token = gen_random_uuid() WHERE id = %s",
            (created["id"],),
        )
        await conn.execute(
            "INSERT INTO payment_attempts (id, payment_id, operation, processor, status)"
            " VALUES (%s, %s, 'authorize', 'simulator', 'pending')",
            (attempt_id, created["id"]),
        )
    await container.processors["simulator"].authorize(
        AuthorizeRequest(
            reference=attempt_id,
            payment_id=created["id"],
            amount=2500,
            currency="BRL",
            capture=True,
            card=CardData("4242424242424242", 10, 2030, "123", None),
        )
    )
    body, headers = await notification_for(simulator_url, attempt_id)
    assert (await api.post("/webhooks/simulator", content=body, headers=headers)).json()["outcome"] == "applied"
    p = await get(api, merchant, created["id"])
    assert p["status"] == "succeeded"
    assert (await attempt_of(container, created["id"]))["status"] == "approved"
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT lease_token, next_run_at, v.cvc_ct FROM payments p"
            " JOIN vault_cards v ON v.id = p.card_id WHERE p.id = %s",
            (created["id"],),
        )
        row = await cur.fetchone()
    assert row["lease_token"] is None and row["next_run_at"] is None and row["cvc_ct"] is None


@pytest.mark.parametrize("tamper", ["body", "signature", "missing"])
async def test_bad_notifications_are_rejected(
    api: Any, container: Any, merchant: Any, simulator_url: str, tamper: str
) -> None:
    p = await three_ds_payment(api, container, merchant)
    body, headers = await notification_for(
        simulator_url, (await attempt_of(container, p["id"]))["id"], status="approved"
    )
    if tamper == "body":
        body = body.replace(b"approved", b"declined")
    elif tamper == "signature":
        headers["Simulator-Signature"] = headers["Simulator-Signature"][:-4] + "0000"
    else:
        del headers["Simulator-Signature"]
    r = await api.post("/webhooks/simulator", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_signature"
    assert (await get(api, merchant, p["id"]))["status"] == "requires_action"
    assert (await api.post("/webhooks/nope", content=body, headers=headers)).status_code == 404


# -- dead letters -------------------------------------------------------------------------------


async def test_exhausted_work_becomes_a_dead_letter_that_an_operator_retries(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    admin = auth(container.settings.admin_key.get_secret_value())
    a = authorizer(container, max_tries=2, janitor_seconds=3600)
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        await sim.post("/_sim/config", json={"error_rate": 1.0})
        try:
            created = await pay(api, merchant)
            for _ in range(2):
                await make_due(container, created["id"])
                await a.run_batch(1000)
        finally:
            await sim.post("/_sim/config", json={"error_rate": 0.0})
    letters = (await api.get("/admin/v1/dead_letters?status=open&limit=100", headers=admin)).json()["data"]
    [letter] = [d for d in letters if d["object_id"] == created["id"]]
    assert (letter["object"], letter["kind"], letter["operation"], letter["tries"]) == (
        "dead_letter",
        "payment",
        "authorize",
        2,
    )
    assert "transient" in letter["last_error"] and letter["history"][0]["calls"] >= 1
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT next_run_at - now() AS wait FROM payments WHERE id = %s", (created["id"],))
        assert (await cur.fetchone())["wait"] > timedelta(minutes=30)  # only the janitor looks now
    # The janitor only looks up: the processor (healthy again) has no record, so nothing is sent.
    await make_due(container, created["id"])
    await a.run_batch(1000)
    assert (await get(api, merchant, created["id"]))["status"] == "processing"
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        assert (await sim.get("/_sim/authorizations", params={"payment": created["id"]})).json()["data"] == []
    retried = await api.post(f"/admin/v1/dead_letters/{letter['id']}/retry", headers=admin)
    assert retried.status_code == 200 and retried.json()["status"] == "retried"
    await drain(authorizer(container))
    assert (await get(api, merchant, created["id"]))["status"] == "succeeded"
    resolved = (await api.get("/admin/v1/dead_letters?status=resolved&limit=100", headers=admin)).json()["data"]
    assert letter["id"] in {d["id"] for d in resolved}
    again = await api.post(f"/admin/v1/dead_letters/{letter['id']}/retry", headers=admin)
    assert again.status_code == 400
    assert (await api.post("/admin/v1/dead_letters/dl_nope/retry", headers=admin)).status_code == 404
    assert (await api.get("/admin/v1/dead_letters", headers=auth(merchant.secret_key))).status_code == 401


def test_dlq_cli_lists_and_retries(container: Any, tender_env: dict[str, str], dead_lettered_payment: Any) -> None:
    import os
    import subprocess
    import sys

    import psycopg

    payment_id, dl_id = dead_lettered_payment
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")} | tender_env | {"COLUMNS": "200"}
    listed = subprocess.run(
        [sys.executable, "-m", "tender", "dlq", "list"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert dl_id in listed.stdout and payment_id in listed.stdout
    retried = subprocess.run(
        [sys.executable, "-m", "tender", "dlq", "retry", dl_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "due again" in retried.stdout
    with psycopg.connect(tender_env["TENDER_DATABASE_URL"]) as conn:
        status, due = conn.execute(
            "SELECT d.status, p.next_run_at <= now() FROM dead_letters d JOIN payments p ON p.id = d.object_id"
            " WHERE d.id = %s",
            (dl_id,),
        ).fetchone()
    assert (status, due) == ("retried", True)
    missing = subprocess.run(
        [sys.executable, "-m", "tender", "dlq", "retry", "dl_missing"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "No such dead letter" in missing.stderr


@pytest.fixture
async def dead_lettered_payment(api: Any, container: Any, merchant: Any) -> tuple[str, str]:
    """A processing payment with an open dead letter, made directly (the pump's path is tested above)."""
    from tender.domain.ids import DEAD_LETTER, new_id

    created = await pay(api, merchant)
    dl_id = new_id(DEAD_LETTER)
    async with container.db.connection() as conn:
        await conn.execute("UPDATE payments SET next_run_at = NULL WHERE id = %s", (created["id"],))
        await conn.execute(
            "INSERT INTO dead_letters (id, kind, object_id, operation, tries, last_error)"
            " VALUES (%s, 'payment', %s, 'authorize', 8, 'transient failure: 503')",
            (dl_id, created["id"]),
        )
    return created["id"], dl_id
