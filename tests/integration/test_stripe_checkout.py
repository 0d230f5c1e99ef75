"""Stripe Checkout as the hosted page (issue 13 item 5), against tests/support/fake_stripe_checkout.py: a FAKE
following Stripe's API reference, because localstripe (the emulator the other Stripe tests use) has no
Checkout Sessions. Tender's side is real: the API in process, PostgreSQL, the expiry pump, the ledger."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from tender.services import checkout_stripe
from tender.services.pacing import Pacing
from tender.worker.pumps import ExpiryPump
from tests.support.api import auth
from tests.support.checkout import events_of, session_body
from tests.support.fake_stripe_checkout import (
    FakeStripeCheckout,
    checkout_completed_event,
    serve_fake,
    tender_with_stripe,
)
from tests.support.money import admin
from tests.support.refunds import drain_refunds
from tests.support.refunds import pump as refund_pump

pytestmark = pytest.mark.integration

T = TypeVar("T")

STRIPE = {"processor": "stripe", "expires_in": 3600}


@pytest.fixture(scope="module")
async def fake(localstripe_url: str) -> AsyncIterator[FakeStripeCheckout]:
    """The Checkout fake, forwarding the rest of Stripe's API to localstripe (PaymentIntents, Refunds)."""
    async with serve_fake() as f:
        f.upstream = localstripe_url
        yield f


@pytest.fixture(scope="module")
async def tender(settings: Any, fake: FakeStripeCheckout, container: Any) -> AsyncIterator[tuple[Any, Any]]:
    """Tender configured for Stripe (the fake's address as TENDER_STRIPE_API_BASE), on the session's database."""
    async with tender_with_stripe(
        settings, container.processors, api_base=fake.url, secret_key="sk_test_tender"
    ) as pair:
        yield pair


@pytest.fixture(scope="module")
def stripe_container(tender: tuple[Any, Any]) -> Any:
    return tender[0]


@pytest.fixture(scope="module")
def sapi(tender: tuple[Any, Any]) -> httpx.AsyncClient:
    return tender[1]  # type: ignore[no-any-return]


def _ref() -> str:
    return "order-" + uuid.uuid4().hex[:8]


async def _create(sapi: httpx.AsyncClient, merchant: Any, ref: str, **extra: Any) -> httpx.Response:
    return await sapi.post(
        "/v1/checkout/sessions", json=session_body(ref, **STRIPE, **extra), headers=auth(merchant.secret_key)
    )


async def test_a_stripe_session_is_registered_once_and_answers_stripes_page(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout
) -> None:
    ref = _ref()
    r = await _create(sapi, merchant, ref)
    assert r.status_code == 201, r.text
    session = r.json()
    assert session["processor"] == "stripe" and session["status"] == "open" and session["payment"] is None
    [stripe_session] = fake.by_reference(session["id"])  # client_reference_id = Tender's session id
    assert session["url"] == stripe_session["url"] and session["url"].startswith(fake.url + "/pay/cs_")
    assert stripe_session["amount_total"] == 2500 and stripe_session["currency"] == "brl"
    assert stripe_session["success_url"].startswith("https://shop.example/thanks?order=1&session_id=" + session["id"])
    again = await _create(sapi, merchant, ref)
    assert again.status_code == 200 and again.json() == session
    assert len(fake.by_reference(session["id"])) == 1  # the same reference never registers a second page
    # Tender's own page does not serve it (nor take a card for it): the page is Stripe's.
    assert (await sapi.get(f"/checkout/{session['id']}")).status_code == 404
    assert (await sapi.get(f"/checkout/{session['id']}/status")).status_code == 404


async def test_a_lost_answer_from_stripe_is_found_again_not_created_twice(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout
) -> None:
    """Stripe made the session but its answer was lost (a 500 after the fact): the merchant's retry finds it by
    client_reference_id in Stripe's list instead of making a second one (the fake, like localstripe, ignores
    Idempotency-Key, so only Tender's own record can prevent it)."""
    ref = _ref()
    fake.fail_creates = 1
    r = await _create(sapi, merchant, ref)
    assert r.status_code == 503 and r.json()["error"]["code"] == "processor_unavailable"
    made = max(fake.sessions.values(), key=lambda s: s["id"])  # the fake's newest: made, its answer lost
    creates = fake.creates
    retry = await _create(sapi, merchant, ref)
    assert retry.status_code == 200, retry.text
    assert retry.json()["url"] == made["url"]
    assert retry.json()["id"] == made["client_reference_id"]
    assert fake.creates == creates and len(fake.by_reference(retry.json()["id"])) == 1


async def test_concurrent_requests_for_one_session_register_one_stripe_page(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout
) -> None:
    """Two requests for the same order at once while Stripe is slow: only one may search-then-create (the
    other is told to try again), or both would find nothing and make two Stripe pages for one session."""
    ref = _ref()
    fake.delay = 0.5
    try:
        answers = await asyncio.gather(*(_create(sapi, merchant, ref) for _ in range(3)))
    finally:
        fake.delay = 0.0
    codes = [r.status_code for r in answers]
    assert codes.count(201) == 1 and set(codes) <= {200, 201, 409}, [r.text for r in answers]
    session_id = next(r.json()["id"] for r in answers if r.status_code == 201)
    assert len(fake.by_reference(session_id)) == 1
    again = await _create(sapi, merchant, ref)
    assert again.status_code == 200 and again.json()["url"] == fake.by_reference(session_id)[0]["url"]


async def test_retrieving_a_registering_session_does_not_register_it(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout, stripe_container: Any
) -> None:
    """Only the POST (or its retry) and the pump register, under the registration's lease: a GET racing them
    must not create a Stripe page of its own."""
    ref = _ref()
    fake.down = True
    try:
        assert (await _create(sapi, merchant, ref)).status_code == 503
    finally:
        fake.down = False
    async with stripe_container.db.connection() as conn:
        cur = await conn.execute("SELECT id FROM checkout_sessions WHERE reference = %s", (ref,))
        row = await cur.fetchone()
    assert row is not None
    creates = fake.creates
    got = (await sapi.get(f"/v1/checkout/sessions/{row['id']}", headers=auth(merchant.secret_key))).json()
    assert got["status"] == "open" and got["url"] is None and got["processor"] == "stripe"
    assert fake.creates == creates and fake.by_reference(row["id"]) == []


async def test_expiring_a_registering_session_waits_for_its_registration(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout, stripe_container: Any
) -> None:
    """While a request holds the registration's lease, the merchant's expire is a 409 (else the registration
    could leave a Stripe page open for an expired session); once free, the session expires."""
    from tender.store import checkout as store

    h = auth(merchant.secret_key)
    ref = _ref()
    fake.down = True
    try:
        assert (await _create(sapi, merchant, ref)).status_code == 503
    finally:
        fake.down = False
    async with stripe_container.db.connection() as conn:
        cur = await conn.execute("SELECT id FROM checkout_sessions WHERE reference = %s", (ref,))
        row = await cur.fetchone()
    assert row is not None
    session_id = row["id"]
    async with stripe_container.db.transaction() as conn:  # a registration in flight elsewhere
        assert await store.take_registration(conn, session_id, uuid.uuid4(), 60)
    busy = await sapi.post(f"/v1/checkout/sessions/{session_id}/expire", headers=h)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "checkout_session_busy"
    async with stripe_container.db.transaction() as conn:  # that registration died; its lease ran out
        await conn.execute("UPDATE checkout_sessions SET next_run_at = now() WHERE id = %s", (session_id,))
    done = await sapi.post(f"/v1/checkout/sessions/{session_id}/expire", headers=h)
    assert done.status_code == 200 and done.json()["status"] == "expired"
    assert fake.by_reference(session_id) == []


async def test_completion_by_webhook_event_makes_one_succeeded_payment_with_payable_and_events(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout, stripe_container: Any
) -> None:
    h = auth(merchant.secret_key)
    session = (await _create(sapi, merchant, _ref())).json()
    [stripe_session] = fake.by_reference(session["id"])
    paid = fake.pay(stripe_session["id"])
    event = checkout_completed_event(paid)
    async with stripe_container.db.transaction() as conn:
        assert await checkout_stripe.apply_event(conn, event) == "applied"
    async with stripe_container.db.transaction() as conn:  # a replay (or the look-up after it) changes nothing
        assert await checkout_stripe.apply_event(conn, event) == "stale"
    got = (await sapi.get(f"/v1/checkout/sessions/{session['id']}", headers=h)).json()
    assert got["status"] == "complete" and got["payment"] is not None
    payment = (await sapi.get(f"/v1/payments/{got['payment']}", headers=h)).json()
    assert payment["status"] == "succeeded" and payment["amount_captured"] == 2500
    assert (
        payment["processor"] == "stripe"
        and payment.get("processor_reference", paid["payment_intent"]) == paid["payment_intent"]
    )
    payables = (await sapi.get("/v1/payables", params={"payment": payment["id"]}, headers=h)).json()["data"]
    assert [(p["amount"], p["fee"], p["net"]) for p in payables] == [(2500, 125, 2375)]  # credit terms: funding unknown
    completed = [e for e in await events_of(sapi, merchant, "checkout.session.completed")
                 if e["data"]["object"]["id"] == session["id"]]  # fmt: skip
    succeeded = [e for e in await events_of(sapi, merchant, "payment.succeeded")
                 if e["data"]["object"]["id"] == payment["id"]]  # fmt: skip
    assert len(completed) == 1 and len(succeeded) == 1
    listed = (await sapi.get("/v1/payments", headers=h)).json()["data"]
    assert [p["id"] for p in listed] == [payment["id"]]  # one payment, whatever is replayed


async def test_completion_by_look_up_when_the_merchant_retrieves_the_session(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout
) -> None:
    """No webhook: the shopper is back on success_url and the merchant asks; Tender asks Stripe."""
    h = auth(merchant.secret_key)
    session = (await _create(sapi, merchant, _ref())).json()
    still = (await sapi.get(f"/v1/checkout/sessions/{session['id']}", headers=h)).json()
    assert still["status"] == "open"
    fake.pay(fake.by_reference(session["id"])[0]["id"])
    got = (await sapi.get(f"/v1/checkout/sessions/{session['id']}", headers=h)).json()
    assert got["status"] == "complete"
    payment = (await sapi.get(f"/v1/payments/{got['payment']}", headers=h)).json()
    assert payment["status"] == "succeeded"


class _CountedPacing(Pacing):
    """The worker's pacing, noting the processor of each call it lets through."""

    def __init__(self) -> None:
        super().__init__(1)
        self.names: list[str] = []

    async def call(self, processor: str, call: Callable[[], Awaitable[T]]) -> T:
        self.names.append(processor)
        return await super().call(processor, call)


async def test_the_pump_looks_up_an_open_stripe_session_and_registers_one_left_registering(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout, stripe_container: Any
) -> None:
    """No webhook and no merchant: the expiry pump's look-ups complete a paid session, and register one whose
    request died before Stripe answered (Stripe was down): nothing waits for a notification that never comes."""
    c = stripe_container
    pacing = _CountedPacing()
    pump = ExpiryPump(c.db, stripe=(c.vault, checkout_stripe.StripeAccess.of(c.settings)), pacing=pacing)
    paid_session = (await _create(sapi, merchant, _ref())).json()
    fake.pay(fake.by_reference(paid_session["id"])[0]["id"])
    fake.down = True
    try:
        failed = await _create(sapi, merchant, ref := _ref())
    finally:
        fake.down = False
    assert failed.status_code == 503
    async with c.db.connection() as conn:
        cur = await conn.execute("SELECT id, url FROM checkout_sessions WHERE reference = %s", (ref,))
        row = await cur.fetchone()
        assert row is not None and row["url"] == ""  # registering: on record before any call
        registering_id = row["id"]
        await conn.execute(
            "UPDATE checkout_sessions SET next_run_at = now() WHERE id = ANY(%s)",
            ([paid_session["id"], registering_id],),
        )
    await pump.run_batch(100)
    assert pacing.names == ["stripe", "stripe"]  # the look-ups queue behind the worker's limit of calls to Stripe
    h = auth(merchant.secret_key)
    async with c.db.connection() as conn:
        cur = await conn.execute(
            "SELECT id, status, url, processor_session_id, next_run_at > now() AS later FROM checkout_sessions"
            " WHERE id = ANY(%s)",
            ([paid_session["id"], registering_id],),
        )
        rows = {r["id"]: r for r in await cur.fetchall()}
    assert rows[paid_session["id"]]["status"] == "complete"
    registered = rows[registering_id]
    assert registered["status"] == "open" and registered["processor_session_id"].startswith("cs_test_")
    assert registered["later"]  # looked at again later while open
    assert len(fake.by_reference(registering_id)) == 1
    got = (await sapi.get(f"/v1/checkout/sessions/{registering_id}", headers=h)).json()
    assert got["url"] == fake.by_reference(registering_id)[0]["url"]


async def test_expired_at_stripe_expires_the_session_and_the_merchant_can_expire_one(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout, stripe_container: Any
) -> None:
    h = auth(merchant.secret_key)
    first = (await _create(sapi, merchant, _ref())).json()
    stripe_first = fake.by_reference(first["id"])[0]
    stripe_first["status"] = "expired"
    async with stripe_container.db.transaction() as conn:
        outcome = await checkout_stripe.apply_event(
            conn, checkout_completed_event(stripe_first, "checkout.session.expired")
        )
    assert outcome == "applied"
    assert (await sapi.get(f"/v1/checkout/sessions/{first['id']}", headers=h)).json()["status"] == "expired"
    second = (await _create(sapi, merchant, _ref())).json()
    r = await sapi.post(f"/v1/checkout/sessions/{second['id']}/expire", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "expired"
    assert fake.by_reference(second["id"])[0]["status"] == "expired"  # closed at Stripe too: no one pays it now
    expired = [e["data"]["object"]["id"] for e in await events_of(sapi, merchant, "checkout.session.expired")]
    assert first["id"] in expired and second["id"] in expired


async def test_delayed_payment_methods_complete_or_fail_by_their_later_events(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout, stripe_container: Any
) -> None:
    """A bank debit: `completed` while still unpaid changes nothing yet; `async_payment_succeeded` then pays the
    session; `async_payment_failed` on another fails its payment and closes the session (no money)."""
    h = auth(merchant.secret_key)
    ok, bad = [(await _create(sapi, merchant, _ref())).json() for _ in range(2)]
    outcomes = []
    for session, later in ((ok, "async_payment_succeeded"), (bad, "async_payment_failed")):
        stripe_session = fake.by_reference(session["id"])[0]
        stripe_session.update(status="complete", payment_status="unpaid", payment_intent="pi_" + uuid.uuid4().hex)
        async with stripe_container.db.transaction() as conn:
            outcomes.append(await checkout_stripe.apply_event(conn, checkout_completed_event(stripe_session)))
        if later == "async_payment_succeeded":
            stripe_session["payment_status"] = "paid"
        async with stripe_container.db.transaction() as conn:
            event = checkout_completed_event(stripe_session, f"checkout.session.{later}")
            outcomes.append(await checkout_stripe.apply_event(conn, event))
    assert outcomes == ["ignored", "applied", "ignored", "applied"]
    done = (await sapi.get(f"/v1/checkout/sessions/{ok['id']}", headers=h)).json()
    assert done["status"] == "complete"
    assert (await sapi.get(f"/v1/payments/{done['payment']}", headers=h)).json()["status"] == "succeeded"
    failed = (await sapi.get(f"/v1/checkout/sessions/{bad['id']}", headers=h)).json()
    assert failed["status"] == "expired" and failed["payment"] is not None
    payment = (await sapi.get(f"/v1/payments/{failed['payment']}", headers=h)).json()
    assert payment["status"] == "failed" and payment["amount_captured"] == 0
    assert (await sapi.get("/v1/payables", params={"payment": payment["id"]}, headers=h)).json()["data"] == []


async def test_a_paid_session_of_another_amount_is_not_booked(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout, stripe_container: Any
) -> None:
    """Stripe says paid, but not the session's amount (never so for a session Tender made): nothing is booked on
    a guess, the event is answered (no 500 for Stripe to retry for ever), the session stays open for an operator."""
    h = auth(merchant.secret_key)
    session = (await _create(sapi, merchant, _ref())).json()
    paid = fake.pay(fake.by_reference(session["id"])[0]["id"])
    async with stripe_container.db.transaction() as conn:
        outcome = await checkout_stripe.apply_event(conn, checkout_completed_event({**paid, "amount_total": 1}))
    assert outcome == "mismatch"
    async with stripe_container.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM payments WHERE checkout_session_id = %s", (session["id"],))
        row = await cur.fetchone()
    assert row is not None and row["n"] == 0
    fake.sessions[paid["id"]]["amount_total"] = 1  # the look-up on GET hears the same from Stripe
    assert (await sapi.get(f"/v1/checkout/sessions/{session['id']}", headers=h)).json()["status"] == "open"


async def test_an_event_about_an_unknown_session_changes_nothing(stripe_container: Any) -> None:
    stranger = {"id": "cs_test_stranger", "object": "checkout.session", "status": "complete",
                "payment_status": "paid", "payment_intent": "pi_x", "client_reference_id": None}  # fmt: skip
    async with stripe_container.db.transaction() as conn:
        assert await checkout_stripe.apply_event(conn, checkout_completed_event(stranger)) == "unknown_reference"
        assert await checkout_stripe.apply_event(conn, {"type": "payment_intent.created"}) == "ignored"


@pytest.mark.parametrize(
    ("overrides", "param"),
    [({"processor": "paypal"}, "processor"), ({"processor": "stripe", "expires_in": 600}, "expires_in")],
)
async def test_bad_hosted_requests_are_400_naming_the_field_and_write_nothing(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout, overrides: dict[str, Any], param: str
) -> None:
    before = fake.creates
    ref = _ref()
    r = await sapi.post("/v1/checkout/sessions", json=session_body(ref, **overrides), headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    listed = (await sapi.get("/v1/checkout/sessions", headers=auth(merchant.secret_key))).json()["data"]
    assert ref not in [s["reference"] for s in listed] and fake.creates == before


async def test_without_stripe_settings_a_stripe_session_is_a_400(api: httpx.AsyncClient, merchant: Any) -> None:
    """The session container has no TENDER_STRIPE_SECRET_KEY: Tender's own page works, Stripe's is refused."""
    r = await api.post("/v1/checkout/sessions", json=session_body(_ref(), **STRIPE), headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "processor"


async def test_a_stripe_checkout_payment_is_refunded_at_stripe_like_any_other(
    sapi: httpx.AsyncClient, merchant: Any, fake: FakeStripeCheckout, stripe_container: Any, localstripe_url: str
) -> None:
    """The shopper pays a real PaymentIntent (at localstripe, through the fake's page); the payment Tender records
    for it is refunded by the refund pump through the stripe processor, at Stripe, and the ledger stays balanced."""
    h = auth(merchant.secret_key)
    session = (await _create(sapi, merchant, _ref())).json()
    paid = await fake.pay_for_real(fake.by_reference(session["id"])[0]["id"])
    got = (await sapi.get(f"/v1/checkout/sessions/{session['id']}", headers=h)).json()
    assert got["status"] == "complete"
    payment = (await sapi.get(f"/v1/payments/{got['payment']}", headers=h)).json()
    assert payment["status"] == "succeeded" and payment["processor_reference"] == paid["payment_intent"]
    r = await sapi.post("/v1/refunds", json={"payment": payment["id"], "amount": 1000}, headers=h)
    assert r.status_code == 202, r.text
    await drain_refunds(refund_pump(stripe_container))
    refund = (await sapi.get(f"/v1/refunds/{r.json()['id']}", headers=h)).json()
    assert refund["status"] == "succeeded", refund
    async with httpx.AsyncClient(base_url=localstripe_url, auth=("sk_test_tender", "")) as ls:
        at_stripe = (await ls.get("/v1/refunds", params={"payment_intent": paid["payment_intent"]})).json()["data"]
    assert [x["amount"] for x in at_stripe] == [1000]
    assert (await sapi.get(f"/v1/payments/{payment['id']}", headers=h)).json()["amount_refunded"] == 1000
    verify = await sapi.get("/admin/v1/ledger/verify", headers=admin(stripe_container.settings))
    assert verify.json()["balanced"] is True
