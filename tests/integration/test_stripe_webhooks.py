"""POST /webhooks/stripe on the in-process app and a real PostgreSQL: Stripe's signature (the `stripe` package's
own signing helper), storage, at-most-once, never backwards, and what each event does.

The Stripe payments are real ones at localstripe (the Stripe emulator, its own process): the pump registers the
PaymentIntent (its `pi_...` on record with the attempt), and the test then moves it at localstripe through the
official `stripe` package (confirm, 3-D Secure) as Stripe would while Tender's own answer is lost or not yet
in, and posts the PaymentIntent localstripe returns as the event's object. localstripe sends no charge.refunded
or charge.dispute.created events and has no disputes: those objects are built per Stripe's API reference
(tests/support/stripe_events.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import stripe
from pydantic import SecretStr

from tender.domain.retry import RetryPolicy
from tender.worker.pumps import PaymentPump
from tests.support.localstripe import KEY, authenticate
from tests.support.money import assert_ledger_clean, entries_of, payment_payables, query
from tests.support.payments import attempt_of, drain, get, pay
from tests.support.refunds import drain_refunds, refund
from tests.support.refunds import pump as refund_pump
from tests.support.serve import serve
from tests.support.stripe_events import (
    SECRET,
    charge_refunded,
    dispute,
    event,
    payment_intent,
    post_event,
    signed,
    stripe_id,
    stripe_refund,
)

THREE_DS = "4000002760003184"  # localstripe: requires_action


@pytest.fixture(scope="module")
async def stripe_container(settings: Any, container: Any, localstripe_url: str) -> AsyncIterator[Any]:
    """Tender with Stripe on (pointing at localstripe), new payments going to it, and the webhook secret set."""
    from tender.bootstrap import build

    configured = settings.model_copy(
        update={
            "stripe_secret_key": SecretStr(KEY),
            "stripe_api_base": localstripe_url,
            "stripe_webhook_secret": SecretStr(SECRET),
            "default_processor": "stripe",
        }
    )
    c = build(configured, configured.database_url)
    c.processors = {**container.processors, "stripe": c.processors["stripe"]}
    await c.open()
    yield c
    await c.processors["stripe"].aclose()
    await c.db.close()


@pytest.fixture(scope="module")
async def stripe_api(stripe_container: Any) -> AsyncIterator[httpx.AsyncClient]:
    from tender.api.app import create_app

    transport = httpx.ASGITransport(app=create_app(stripe_container))
    async with httpx.AsyncClient(transport=transport, base_url="http://tender.test") as client:
        yield client


@pytest.fixture(scope="module")
def at_stripe(localstripe_url: str) -> stripe.StripeClient:
    """The official `stripe` package on localstripe: what Stripe's side does outside Tender's calls."""
    return stripe.StripeClient(KEY, base_addresses={"api": localstripe_url}, http_client=stripe.HTTPXClient())


async def stored(container: Any, event_id: str) -> list[dict[str, Any]]:
    return await query(
        container, "SELECT * FROM processor_events WHERE processor = 'stripe' AND event_id = %s", event_id
    )


def payment_pump(c: Any) -> PaymentPump:
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0)
    return PaymentPump(c.db, c.vault, c.processors, lease_seconds=30, retry=policy)


async def registered(
    api: Any, c: Any, merchant: Any, number: str = "4242424242424242", **kw: Any
) -> tuple[dict[str, Any], str]:
    """A Stripe payment whose PaymentIntent the pump registered (its `pi_...` on record with the attempt) and
    did not confirm yet: one round of the pump only registers."""
    p = await pay(api, merchant, number, **kw)
    assert p["processor"] == "stripe"
    await payment_pump(c).run_batch(100)
    attempt = await attempt_of(c, p["id"])
    assert attempt["status"] == "pending" and attempt["processor_reference"].startswith("pi_"), attempt
    return p, attempt["processor_reference"]


async def confirmed_at_stripe(at_stripe: stripe.StripeClient, pi_id: str) -> dict[str, Any]:
    """Stripe confirms the PaymentIntent (as when Tender's confirm reached it and the answer was lost)."""
    return (await at_stripe.v1.payment_intents.confirm_async(pi_id)).to_dict()


async def at_stripe_now(at_stripe: stripe.StripeClient, pi_id: str) -> dict[str, Any]:
    return (await at_stripe.v1.payment_intents.retrieve_async(pi_id)).to_dict()


async def succeeded(api: Any, c: Any, merchant: Any) -> tuple[dict[str, Any], str]:
    """A Stripe payment the pump took to `succeeded`, and its PaymentIntent's id."""
    created = await pay(api, merchant)
    await drain(payment_pump(c))
    p = await get(api, merchant, created["id"])
    assert p["status"] == "succeeded" and p["processor_reference"].startswith("pi_"), p
    return p, p["processor_reference"]


async def merchant_events(container: Any, payment_id: str) -> list[dict[str, Any]]:
    return await query(container, "SELECT type, data FROM events WHERE object_id = %s ORDER BY sequence", payment_id)


# -- verification: nothing stored unless Stripe signed it, recently ---------------------------------------


async def test_bad_signature_is_400_and_stores_nothing(stripe_api: Any, container: Any) -> None:
    evt = event("payment_intent.succeeded", payment_intent("succeeded"))
    body = orjson.dumps(evt)
    for headers in (
        signed(body, secret="whsec_someone_else"),
        {"Stripe-Signature": "t=1,v1=00"},
        {"Stripe-Signature": "garbage"},
        {},
    ):
        r = await stripe_api.post("/webhooks/stripe", content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_signature"
        assert r.json()["error"]["param"] == "Stripe-Signature"
    # a signed body changed after signing
    tampered = body.replace(b'"succeeded"', b'"canceled"', 1)
    r = await stripe_api.post("/webhooks/stripe", content=tampered, headers=signed(body))
    assert r.status_code == 400
    assert await stored(container, evt["id"]) == []


async def test_stale_timestamp_is_400_and_stores_nothing(stripe_api: Any, container: Any) -> None:
    evt = event("payment_intent.succeeded", payment_intent("succeeded"))
    r = await post_event(stripe_api, evt, timestamp=int(time.time()) - 301)
    assert r.status_code == 400
    assert "tolerance" in r.json()["error"]["message"]
    assert await stored(container, evt["id"]) == []


async def test_signed_body_that_is_not_an_event_is_400_naming_body(stripe_api: Any, container: Any) -> None:
    for body in (b"{not json", b"[1, 2]", b'"text"', b"{}"):
        r = await stripe_api.post("/webhooks/stripe", content=body, headers=signed(body))
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"].startswith("body"), r.text
    # not UTF-8: Stripe never signs that, and it is a 400 before any signature is computed, never a 500
    r = await stripe_api.post("/webhooks/stripe", content=b"\xff\xfe{}", headers={"Stripe-Signature": "t=1,v1=00"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "body"
    missing_id = {k: v for k, v in event("charge.refunded", {}).items() if k != "id"}
    r = await post_event(stripe_api, missing_id)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "body.id"


async def test_signed_event_holding_a_nul_is_a_400_naming_the_field(stripe_api: Any, container: Any) -> None:
    """Signed, yet PostgreSQL's jsonb cannot hold a NUL: a 400 naming where it is, never a 500, nothing stored."""
    evt = event("customer.created", {"id": stripe_id("cus"), "object": "customer", "name": "a\x00b"})
    r = await post_event(stripe_api, evt)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "data.object.name"  # as for the simulator's notifications
    assert await stored(container, evt["id"]) == []


async def test_unset_secret_is_400_naming_the_setting(api: Any, container: Any) -> None:
    assert container.settings.stripe_webhook_secret is None
    evt = event("payment_intent.succeeded", payment_intent("succeeded"))
    r = await post_event(api, evt)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "webhook_not_configured"
    assert "TENDER_STRIPE_WEBHOOK_SECRET" in r.json()["error"]["message"]
    assert await stored(container, evt["id"]) == []


# -- stored, at most once ---------------------------------------------------------------------------------


async def test_unknown_object_is_stored_and_answered_200(stripe_api: Any, container: Any) -> None:
    session = {"id": stripe_id("cs"), "object": "checkout.session", "status": "complete"}
    for evt, outcome in (
        (event("payment_intent.succeeded", payment_intent("succeeded", attempt="att_nobody")), "unknown_object"),
        (event("charge.refunded", charge_refunded(stripe_id("pi"), amount=100, amount_refunded=100)), "unknown_object"),
        (event("charge.dispute.created", dispute(stripe_id("pi"), amount=100)), "unknown_object"),
        (event("customer.created", {"id": stripe_id("cus"), "object": "customer"}), "ignored"),
        # handed to services/checkout_stripe.apply_event, which knows no such session
        (event("checkout.session.completed", session), "unknown_reference"),
    ):
        r = await post_event(stripe_api, evt)
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == outcome, evt["type"]
        [row] = await stored(container, evt["id"])
        assert (row["type"], row["payload"], row["outcome"]) == (evt["type"], evt, outcome)


async def test_succeeded_applies_once_with_payable_and_ledger(
    stripe_api: Any, stripe_container: Any, merchant: Any, at_stripe: stripe.StripeClient, localstripe_url: str
) -> None:
    c = stripe_container
    p, pi_id = await registered(stripe_api, c, merchant)
    pi = await confirmed_at_stripe(at_stripe, pi_id)
    assert pi["status"] == "succeeded"
    evt = event("payment_intent.succeeded", pi)

    first = await post_event(stripe_api, evt)
    assert first.status_code == 200 and first.json()["outcome"] == "applied"
    after = await get(stripe_api, merchant, p["id"])
    assert after["status"] == "succeeded"
    assert after["amount_captured"] == p["amount"]
    assert after["processor_reference"] == pi_id
    assert len(await payment_payables(c, p["id"])) == 1
    assert len(await entries_of(c, p["id"])) == 1

    # Stripe retries the same event: stored once, nothing applied twice
    replay = await post_event(stripe_api, evt)
    assert replay.status_code == 200 and replay.json()["outcome"] == "duplicate"
    assert len(await stored(c, evt["id"])) == 1
    # and the pump has nothing left to do for it: the payment is final
    await drain(payment_pump(c))
    assert len(await payment_payables(c, p["id"])) == 1
    assert len(await entries_of(c, p["id"])) == 1
    assert [e["type"] for e in await merchant_events(c, p["id"])] == ["payment.succeeded"]
    await assert_ledger_clean(c)


async def test_the_same_event_delivered_twice_at_once_applies_once(
    stripe_api: Any, stripe_container: Any, merchant: Any, at_stripe: stripe.StripeClient
) -> None:
    """Stripe may deliver an event again before the first delivery is answered: the second waits on the first's
    row (processor_events' primary key) and finds it stored."""
    c = stripe_container
    p, pi_id = await registered(stripe_api, c, merchant)
    evt = event("payment_intent.succeeded", await confirmed_at_stripe(at_stripe, pi_id))
    answers = await asyncio.gather(*(post_event(stripe_api, evt) for _ in range(4)))
    assert sorted(r.json()["outcome"] for r in answers) == ["applied", "duplicate", "duplicate", "duplicate"]
    assert len(await payment_payables(c, p["id"])) == 1
    assert [e["type"] for e in await merchant_events(c, p["id"])] == ["payment.succeeded"]


async def test_out_of_order_events_move_nothing_backwards(
    stripe_api: Any, stripe_container: Any, merchant: Any, at_stripe: stripe.StripeClient, localstripe_url: str
) -> None:
    c = stripe_container
    p, pi_id = await registered(stripe_api, c, merchant, THREE_DS)
    waiting = await confirmed_at_stripe(at_stripe, pi_id)
    assert waiting["status"] == "requires_action"
    await authenticate(localstripe_url, pi_id, success=True)
    done = await at_stripe_now(at_stripe, pi_id)
    assert done["status"] == "succeeded"

    # Stripe does not order its events: the success arrives first, the earlier requires_action last
    assert (await post_event(stripe_api, event("payment_intent.succeeded", done))).json()["outcome"] == "applied"
    late = await post_event(stripe_api, event("payment_intent.requires_action", waiting))
    assert late.status_code == 200 and late.json()["outcome"] == "stale"
    declined = payment_intent("requires_payment_method", pi_id=pi_id, attempt=done["metadata"]["tender_attempt"])
    assert (await post_event(stripe_api, event("payment_intent.payment_failed", declined))).json()["outcome"] == "stale"
    canceled = payment_intent("canceled", pi_id=pi_id)  # found by its pi id alone
    assert (await post_event(stripe_api, event("payment_intent.canceled", canceled))).json()["outcome"] == "stale"
    after = await get(stripe_api, merchant, p["id"])
    assert after["status"] == "succeeded" and after["next_action"] is None
    assert len(await payment_payables(c, p["id"])) == 1


async def test_three_d_secure_then_decline_by_events(
    stripe_api: Any, stripe_container: Any, merchant: Any, at_stripe: stripe.StripeClient, localstripe_url: str
) -> None:
    c = stripe_container
    p, pi_id = await registered(stripe_api, c, merchant, THREE_DS)
    waiting = await confirmed_at_stripe(at_stripe, pi_id)
    r = await post_event(stripe_api, event("payment_intent.requires_action", waiting))
    assert r.json()["outcome"] == "applied"
    assert (await get(stripe_api, merchant, p["id"]))["status"] == "requires_action"

    await authenticate(localstripe_url, pi_id, success=False)
    failed = await at_stripe_now(at_stripe, pi_id)
    assert failed["status"] == "requires_payment_method" and failed["last_payment_error"], failed
    r = await post_event(stripe_api, event("payment_intent.payment_failed", failed))
    assert r.json()["outcome"] == "applied"
    after = await get(stripe_api, merchant, p["id"])
    assert after["status"] == "failed"
    assert await payment_payables(c, p["id"]) == []


async def test_amount_capturable_updated_holds_a_manual_capture(
    stripe_api: Any, stripe_container: Any, merchant: Any, at_stripe: stripe.StripeClient
) -> None:
    c = stripe_container
    p, pi_id = await registered(stripe_api, c, merchant, capture=False)
    held = await confirmed_at_stripe(at_stripe, pi_id)
    assert held["status"] == "requires_capture"
    r = await post_event(stripe_api, event("payment_intent.amount_capturable_updated", held))
    assert r.json()["outcome"] == "applied"
    assert (await get(stripe_api, merchant, p["id"]))["status"] == "requires_capture"
    assert await payment_payables(c, p["id"]) == []


async def test_event_naming_a_simulator_attempt_is_not_applied(
    api: Any, stripe_api: Any, stripe_container: Any, merchant: Any
) -> None:
    """metadata.tender_attempt is Stripe's word about a Stripe attempt only: it never moves another
    processor's payment."""
    c = stripe_container
    created = await pay(api, merchant, capture=False)  # the session's container: the simulator's payment
    await drain(payment_pump(c))
    p = await get(api, merchant, created["id"])
    assert (p["processor"], p["status"]) == ("simulator", "requires_capture")
    attempt = await attempt_of(c, p["id"])
    # even naming the simulator's own reference for it, as a forged or misrouted event could
    canceled = payment_intent("canceled", pi_id=attempt["processor_reference"], attempt=attempt["id"])
    r = await post_event(stripe_api, event("payment_intent.canceled", canceled))
    assert r.status_code == 200 and r.json()["outcome"] == "unknown_object"
    assert (await get(api, merchant, p["id"]))["status"] == "requires_capture"


async def test_localstripe_own_webhook_moves_the_payment(
    stripe_container: Any, merchant: Any, at_stripe: stripe.StripeClient, localstripe_url: str
) -> None:
    """localstripe delivers its own payment_intent.succeeded to Tender over HTTP, signed its own way (Stripe's
    scheme, by its own code): verified, stored and applied while Tender's confirm has not answered."""
    from tender.api.app import create_app

    c = stripe_container
    hook = {"url": "", "secret": SECRET, "events": ["payment_intent.succeeded"]}
    async with serve(create_app(c)) as tender_url, httpx.AsyncClient(auth=(KEY, "")) as ls:
        api = httpx.AsyncClient(base_url=tender_url)
        r = await ls.post(
            f"{localstripe_url}/_config/webhooks/tender", json={**hook, "url": tender_url + "/webhooks/stripe"}
        )
        assert r.status_code == 200, r.text
        try:
            p, pi_id = await registered(api, c, merchant)
            await confirmed_at_stripe(at_stripe, pi_id)
            for _ in range(75):  # localstripe waits 1 s before it sends
                if (await get(api, merchant, p["id"]))["status"] != "processing":
                    break
                await asyncio.sleep(0.2)
            assert (await get(api, merchant, p["id"]))["status"] == "succeeded"
        finally:
            # localstripe cannot forget a webhook: this one now listens to no event type
            await ls.post(
                f"{localstripe_url}/_config/webhooks/tender", json={**hook, "url": tender_url, "events": ["none"]}
            )
            await api.aclose()
    [row] = await query(
        c, "SELECT type, outcome FROM processor_events WHERE payload->'data'->'object'->>'id' = %s", pi_id
    )
    assert (row["type"], row["outcome"]) == ("payment_intent.succeeded", "applied")
    assert len(await payment_payables(c, p["id"])) == 1


# -- disputes and refunds ---------------------------------------------------------------------------------


async def test_dispute_created_is_an_event_to_the_merchant(
    stripe_api: Any, stripe_container: Any, merchant: Any
) -> None:
    c = stripe_container
    p, pi_id = await succeeded(stripe_api, c, merchant)
    dp = dispute(pi_id, amount=2500, reason="fraudulent")
    evt = event("charge.dispute.created", dp)
    r = await post_event(stripe_api, evt)
    assert r.status_code == 200 and r.json()["outcome"] == "dispute_recorded"
    assert (await post_event(stripe_api, evt)).json()["outcome"] == "duplicate"

    listed = await stripe_api.get(
        "/v1/events",
        params={"type": "payment.dispute_created"},
        headers={"Authorization": f"Bearer {merchant.secret_key}"},
    )
    assert listed.status_code == 200, listed.text
    [shown] = [e for e in listed.json()["data"] if e["data"]["object"]["payment"] == p["id"]]
    obj = shown["data"]["object"]
    assert (obj["id"], obj["amount"], obj["currency"], obj["reason"]) == (dp["id"], 2500, "BRL", "fraudulent")
    assert (await get(stripe_api, merchant, p["id"]))["status"] == "succeeded"  # a dispute moves no status


async def test_refund_made_by_tender_is_left_to_its_pump(stripe_api: Any, stripe_container: Any, merchant: Any) -> None:
    c = stripe_container
    p, pi_id = await succeeded(stripe_api, c, merchant)
    made = await refund(stripe_api, merchant, {"payment": p["id"], "amount": 1000})
    assert made.status_code in (200, 201, 202), made.text
    # Stripe's event may come before the refund pump's own answer is written: the pending refund accounts for it
    evt = event("charge.refunded", charge_refunded(pi_id, amount=2500, amount_refunded=1000))
    r = await post_event(stripe_api, evt)
    assert r.status_code == 200 and r.json()["outcome"] == "refund_by_tender"
    # the charge listing its refunds: Tender's is told by its metadata
    listed = charge_refunded(
        pi_id, amount=2500, amount_refunded=1000, refunds=[stripe_refund(1000, tender_refund=made.json()["id"])]
    )
    assert (await post_event(stripe_api, event("charge.refunded", listed))).json()["outcome"] == "refund_by_tender"
    await drain_refunds(refund_pump(c))
    assert (await get(stripe_api, merchant, p["id"]))["amount_refunded"] == 1000
    again = event("charge.refunded", charge_refunded(pi_id, amount=2500, amount_refunded=1000))
    assert (await post_event(stripe_api, again)).json()["outcome"] == "refund_by_tender"
    assert "payment.refunded_at_processor" not in [e["type"] for e in await merchant_events(c, p["id"])]
    assert await query(c, "SELECT 1 FROM dead_letters WHERE object_id = %s", p["id"]) == []
    await assert_ledger_clean(c)


async def test_refund_made_at_stripe_is_recorded_shown_and_left_to_an_operator(
    stripe_api: Any, stripe_container: Any, merchant: Any
) -> None:
    c = stripe_container
    p, pi_id = await succeeded(stripe_api, c, merchant)
    entries = await entries_of(c, p["id"])
    evt = event("charge.refunded", charge_refunded(pi_id, amount=2500, amount_refunded=700))
    r = await post_event(stripe_api, evt)
    assert r.status_code == 200 and r.json()["outcome"] == "refund_not_by_tender"
    [_, shown] = await merchant_events(c, p["id"])
    assert shown["type"] == "payment.refunded_at_processor"
    assert shown["data"]["object"]["amount_not_booked"] == 700
    letters = "SELECT kind, operation, status, last_error FROM dead_letters WHERE object_id = %s"
    [letter] = await query(c, letters, p["id"])
    assert (letter["kind"], letter["status"]) == ("processor_event", "open")
    assert "700" in letter["last_error"]
    # the ledger is not touched by a guess: the same entries, still balanced
    assert await entries_of(c, p["id"]) == entries
    assert (await get(stripe_api, merchant, p["id"]))["amount_refunded"] == 0
    await assert_ledger_clean(c)


async def test_a_listed_refund_without_tender_metadata_is_not_tenders_even_when_the_amounts_match(
    stripe_api: Any, stripe_container: Any, merchant: Any
) -> None:
    """A Tender refund still pending (its call not made yet) and a refund of the same amount made at Stripe's
    dashboard: the amounts alone would take one for the other; the charge's list of refunds tells them apart."""
    c = stripe_container
    p, pi_id = await succeeded(stripe_api, c, merchant)
    made = await refund(stripe_api, merchant, {"payment": p["id"], "amount": 1000})
    assert made.status_code in (200, 201, 202), made.text
    charge = charge_refunded(pi_id, amount=2500, amount_refunded=1000, refunds=[stripe_refund(1000)])
    r = await post_event(stripe_api, event("charge.refunded", charge))
    assert r.json()["outcome"] == "refund_not_by_tender"
    [letter] = await query(c, "SELECT kind, status FROM dead_letters WHERE object_id = %s", p["id"])
    assert (letter["kind"], letter["status"]) == ("processor_event", "open")
    await drain_refunds(refund_pump(c))  # Tender's own refund goes ahead, booked once by its pump
    assert (await get(stripe_api, merchant, p["id"]))["amount_refunded"] == 1000
    await assert_ledger_clean(c)
