"""Card payments through the `stripe` processor end to end: the API, the worker's payment and refund pumps,
real PostgreSQL, and localstripe (the Stripe emulator, its own process: tests/support/localstripe.py) driven by
the official `stripe` package. Faults go through a small proxy in front of localstripe
(tests/support/stripe_proxy.py): a confirm whose answer is lost after localstripe charged, 5xx and 429 answers,
and Stripe unreachable (a closed port).

localstripe ignores Idempotency-Key (the same key twice makes two PaymentIntents), so what these tests show
about "charged once" rests on Tender's register-then-execute design, not on Stripe's keys: every test counts
the PaymentIntents and charges localstripe holds for the payment."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import psycopg
import pytest

from tender.domain.ledger import receivable_account
from tender.domain.retry import RetryPolicy
from tender.processors.stripe import StripeProcessor
from tender.worker.pumps import PaymentPump
from tests.support.api import auth, card_payment
from tests.support.localstripe import KEY, authenticate, intents_of
from tests.support.money import assert_ledger_clean, entries_of, payment_payables, query
from tests.support.payments import attempt_of, drain, make_due
from tests.support.refunds import drain_refunds, refund
from tests.support.refunds import pump as refund_pump
from tests.support.serve import free_port
from tests.support.stripe_proxy import Fault, running_proxy

pytestmark = pytest.mark.integration

DECLINED = "4000000000000341"  # localstripe: attaches, then declined when charged
THREE_DS = "4000002760003184"  # localstripe: requires_action


def payments_pump(c: Any, stripe: StripeProcessor | None = None, **retry: Any) -> PaymentPump:
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0, **retry)
    processors = {**c.processors, "stripe": stripe} if stripe else c.processors
    return PaymentPump(c.db, c.vault, processors, lease_seconds=30, retry=policy)


async def pay(sapi: httpx.AsyncClient, merchant: Any, number: str = "4242424242424242", **kw: Any) -> dict[str, Any]:
    r = await sapi.post(
        "/v1/payments", json=card_payment(number, processor="stripe", **kw), headers=auth(merchant.secret_key)
    )
    assert r.status_code == 202, r.text
    assert r.json()["processor"] == "stripe"
    return dict(r.json())


async def get(sapi: httpx.AsyncClient, merchant: Any, payment_id: str) -> dict[str, Any]:
    return dict((await sapi.get(f"/v1/payments/{payment_id}", headers=auth(merchant.secret_key))).json())


async def paid(sapi: httpx.AsyncClient, c: Any, merchant: Any, **kw: Any) -> dict[str, Any]:
    created = await pay(sapi, merchant, **kw)
    await drain(payments_pump(c))
    return await get(sapi, merchant, created["id"])


async def test_a_card_payment_through_stripe_succeeds_with_its_payable_and_ledger_entry(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    p = await paid(sapi, stripe_container, merchant)
    assert p["status"] == "succeeded", p
    assert p["processor"] == "stripe" and p["processor_reference"].startswith("pi_")
    assert p["amount_captured"] == 2500
    [intent] = await intents_of(localstripe_url, p["id"])  # exactly one PaymentIntent, charged once
    assert intent["id"] == p["processor_reference"] and intent["status"] == "succeeded"
    assert intent["metadata"]["tender_attempt"] == (await attempt_of(stripe_container, p["id"]))["id"]
    assert intent["latest_charge"]["captured"] is True and intent["latest_charge"]["amount"] == 2500
    [payable] = await payment_payables(stripe_container, p["id"])
    assert payable["amount"] == 2500 and payable["type"] == "payment"
    [entry] = await entries_of(stripe_container, p["id"])
    # The same entry as the simulator's, debiting Stripe's own receivable (money is per processor).
    assert entry["lines"][receivable_account("stripe", "BRL")] == 2500
    assert sum(entry["lines"].values()) == 0
    await assert_ledger_clean(stripe_container)


async def test_no_card_number_or_cvc_reaches_a_log_line_even_at_debug(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # stripe-python logs request bodies at DEBUG (the PaymentMethod's holds the card): processors/stripe.py
    # keeps its logger at WARNING whatever Tender's LOG_LEVEL is.
    caplog.set_level(logging.DEBUG)
    body = card_payment("4000056655665556", processor="stripe")
    body["payment_method"]["card"]["cvc"] = "987"
    r = await sapi.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    await drain(payments_pump(stripe_container))
    assert (await get(sapi, merchant, r.json()["id"]))["status"] == "succeeded"
    logged = caplog.text + "".join(str(rec.args) for rec in caplog.records)
    assert "4000056655665556" not in logged
    assert "cvc%5D=987" not in logged and "cvc]=987" not in logged


async def test_a_payment_with_a_return_url_goes_through_the_emulator(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any
) -> None:
    # localstripe refuses a confirm's return_url (Stripe itself needs it for 3-D Secure's redirect): the
    # processor leaves it out for an emulator, so `tender up --stripe` takes the same bodies as Stripe.
    p = await paid(sapi, stripe_container, merchant, return_url="https://shop.example/back")
    assert p["status"] == "succeeded", p


async def test_the_fee_follows_the_funding_stripe_reports(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any
) -> None:
    # 4000056655665556 is a debit BIN in Tender's table (3 % under the default plan); localstripe reports every
    # card's funding as credit (5 %): the issuer's word, read from the expanded PaymentMethod, wins.
    p = await paid(sapi, stripe_container, merchant, number="4000056655665556")
    assert p["status"] == "succeeded", p
    assert p["payment_method"]["card"]["funding"] == "credit"
    [payable] = await payment_payables(stripe_container, p["id"])
    assert (payable["amount"], payable["fee"]) == (2500, 125)


async def test_the_pi_id_is_on_record_before_the_confirm(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    created = await pay(sapi, merchant)
    pump = payments_pump(stripe_container)
    async with await psycopg.AsyncConnection.connect(stripe_container.db.url, autocommit=True) as listener:
        await listener.execute("LISTEN tender_work")
        assert await pump.run_batch(100) >= 1  # the first round only registers
        # ...and wakes idle workers, so the confirm follows at once rather than at the next poll.
        notes = [n.payload async for n in listener.notifies(timeout=2.0, stop_after=1)]
    assert notes == ["payments"]
    attempt = await attempt_of(stripe_container, created["id"])
    assert attempt["status"] == "pending" and attempt["processor_reference"].startswith("pi_")
    [intent] = await intents_of(localstripe_url, created["id"])
    assert intent["status"] == "requires_confirmation" and intent["id"] == attempt["processor_reference"]
    assert (await get(sapi, merchant, created["id"]))["processor_reference"] == intent["id"]
    await drain(pump)
    assert (await get(sapi, merchant, created["id"]))["status"] == "succeeded"
    assert [i["status"] for i in await intents_of(localstripe_url, created["id"])] == ["succeeded"]


async def test_manual_capture_partial_then_refund(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    p = await paid(sapi, stripe_container, merchant, capture=False)
    assert p["status"] == "requires_capture", p
    [intent] = await intents_of(localstripe_url, p["id"])
    assert intent["status"] == "requires_capture" and intent["capture_method"] == "manual"
    r = await sapi.post(f"/v1/payments/{p['id']}/capture", json={"amount": 1500}, headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    await drain(payments_pump(stripe_container))
    p = await get(sapi, merchant, p["id"])
    assert p["status"] == "succeeded" and p["amount_captured"] == 1500
    [intent] = await intents_of(localstripe_url, p["id"])
    assert intent["status"] == "succeeded" and intent["latest_charge"]["captured"] is True
    [payable] = await payment_payables(stripe_container, p["id"])
    assert payable["amount"] == 1500

    r = await refund(sapi, merchant, {"payment": p["id"], "amount": 1000})
    assert r.status_code in (200, 201, 202), r.text
    await drain_refunds(refund_pump(stripe_container))
    got = (await sapi.get(f"/v1/refunds/{r.json()['id']}", headers=auth(merchant.secret_key))).json()
    assert got["status"] == "succeeded", got
    async with httpx.AsyncClient(base_url=localstripe_url, auth=(KEY, "")) as client:
        refunds = (await client.get("/v1/refunds", params={"payment_intent": intent["id"]})).json()["data"]
    ours = [x for x in refunds if x.get("metadata", {}).get("tender_refund") == got["id"]]
    assert len(ours) == 1 and ours[0]["amount"] == 1000
    await assert_ledger_clean(stripe_container)


async def test_cancel_voids_the_payment_intent(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    p = await paid(sapi, stripe_container, merchant, capture=False)
    r = await sapi.post(f"/v1/payments/{p['id']}/cancel", json={}, headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    await drain(payments_pump(stripe_container))
    assert (await get(sapi, merchant, p["id"]))["status"] == "canceled"
    [intent] = await intents_of(localstripe_url, p["id"])
    assert intent["status"] == "canceled"


async def test_a_decline_fails_the_payment_with_stripes_code(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    p = await paid(sapi, stripe_container, merchant, number=DECLINED)
    assert p["status"] == "failed", p
    assert p["failure_code"] == "card_declined" and p["failure_message"]
    assert p["processor_reference"].startswith("pi_")
    assert await payment_payables(stripe_container, p["id"]) == []
    assert len(await intents_of(localstripe_url, p["id"])) == 1


async def test_three_d_secure_requires_action_then_succeeds_by_look_up(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    p = await paid(sapi, stripe_container, merchant, number=THREE_DS)
    assert p["status"] == "requires_action", p
    assert p["next_action"]["type"] == "redirect_to_url"
    await authenticate(localstripe_url, p["processor_reference"], success=True)  # the shopper passes
    await make_due(stripe_container, p["id"])
    await drain(payments_pump(stripe_container))
    p = await get(sapi, merchant, p["id"])
    assert p["status"] == "succeeded", p
    assert len(await intents_of(localstripe_url, p["id"])) == 1


async def test_a_confirm_whose_answer_is_lost_is_looked_up_and_charged_once(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    async with running_proxy(localstripe_url) as proxy:
        proxy.arm(Fault("/confirm", "drop_answer"))
        stripe = StripeProcessor(KEY, api_base=proxy.url, timeout=1.0)
        try:
            created = await pay(sapi, merchant)
            await drain(payments_pump(stripe_container, stripe))
        finally:
            await stripe.aclose()
    p = await get(sapi, merchant, created["id"])
    assert p["status"] == "succeeded", p
    assert proxy.calls("/confirm") == 1  # the lost answer was resolved by retrieving the stored id
    assert proxy.calls("/v1/payment_intents") == 1  # registered once
    intents = await intents_of(localstripe_url, created["id"])
    assert [i["status"] for i in intents] == ["succeeded"]
    attempt = await attempt_of(stripe_container, created["id"])
    assert attempt["maybe_sent"] is True


async def test_a_registration_whose_answer_is_lost_leaves_an_orphan_that_never_charges(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    # localstripe ignores Idempotency-Key, so registering again makes a second PaymentIntent (real Stripe would
    # answer the first within 24 h): the lost one was never confirmed, so it charged nothing.
    async with running_proxy(localstripe_url) as proxy:
        proxy.arm(Fault("/v1/payment_intents", "drop_answer"))
        stripe = StripeProcessor(KEY, api_base=proxy.url, timeout=1.0)
        try:
            created = await pay(sapi, merchant)
            await drain(payments_pump(stripe_container, stripe))
        finally:
            await stripe.aclose()
    p = await get(sapi, merchant, created["id"])
    assert p["status"] == "succeeded", p
    intents = await intents_of(localstripe_url, created["id"])
    assert sorted(i["status"] for i in intents) == ["requires_confirmation", "succeeded"]
    [charged] = [i for i in intents if i["latest_charge"]]
    assert charged["id"] == p["processor_reference"]


async def test_a_capture_and_a_refund_whose_answers_are_lost_are_found_on_the_payment_intent(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    p = await paid(sapi, stripe_container, merchant, capture=False)
    async with running_proxy(localstripe_url) as proxy:
        proxy.arm(Fault("/capture", "drop_answer"))
        proxy.arm(Fault("/v1/refunds", "drop_answer"))  # the create; the look-up (a list) goes through
        stripe = StripeProcessor(KEY, api_base=proxy.url, timeout=1.0)
        try:
            r = await sapi.post(f"/v1/payments/{p['id']}/capture", json={}, headers=auth(merchant.secret_key))
            assert r.status_code == 202, r.text
            await drain(payments_pump(stripe_container, stripe))
            assert (await get(sapi, merchant, p["id"]))["status"] == "succeeded"
            r = await refund(sapi, merchant, {"payment": p["id"], "amount": 700})
            await drain_refunds(refund_pump(stripe_container, {**stripe_container.processors, "stripe": stripe}))
        finally:
            await stripe.aclose()
    assert proxy.calls("/capture") == 1 and proxy.calls("/v1/refunds") >= 2
    got = (await sapi.get(f"/v1/refunds/{r.json()['id']}", headers=auth(merchant.secret_key))).json()
    assert got["status"] == "succeeded", got
    async with httpx.AsyncClient(base_url=localstripe_url, auth=(KEY, "")) as client:
        made = (await client.get("/v1/refunds", params={"payment_intent": p["processor_reference"]})).json()["data"]
    assert [x["amount"] for x in made if x.get("metadata", {}).get("tender_refund") == got["id"]] == [700]
    await assert_ledger_clean(stripe_container)


async def test_a_500_on_confirm_is_looked_up_then_confirmed_once(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    async with running_proxy(localstripe_url) as proxy:
        proxy.arm(Fault("/confirm", "fail", status=500))
        stripe = StripeProcessor(KEY, api_base=proxy.url, timeout=5.0)
        try:
            created = await pay(sapi, merchant)
            await drain(payments_pump(stripe_container, stripe))
        finally:
            await stripe.aclose()
    assert (await get(sapi, merchant, created["id"]))["status"] == "succeeded"
    assert proxy.calls("/confirm") == 2  # the 500 (never forwarded), then the confirm after the look-up
    assert [i["status"] for i in await intents_of(localstripe_url, created["id"])] == ["succeeded"]


async def test_a_429_on_registration_is_retried(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    async with running_proxy(localstripe_url) as proxy:
        proxy.arm(Fault("/v1/payment_intents", "fail", status=429, times=2))
        stripe = StripeProcessor(KEY, api_base=proxy.url, timeout=5.0)
        try:
            created = await pay(sapi, merchant)
            await drain(payments_pump(stripe_container, stripe))
        finally:
            await stripe.aclose()
    assert (await get(sapi, merchant, created["id"]))["status"] == "succeeded"
    assert proxy.calls("/v1/payment_intents") == 3
    assert [i["status"] for i in await intents_of(localstripe_url, created["id"])] == ["succeeded"]


async def test_stripe_unreachable_retries_and_charges_nothing(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    closed = StripeProcessor(KEY, api_base=f"http://127.0.0.1:{free_port()}", timeout=2.0)
    try:
        created = await pay(sapi, merchant)
        pump = payments_pump(stripe_container, closed)
        for _ in range(3):
            await make_due(stripe_container, created["id"])
            await pump.run_batch(100)
    finally:
        await closed.aclose()
    p = await get(sapi, merchant, created["id"])
    assert p["status"] == "processing"
    attempt = await attempt_of(stripe_container, created["id"])
    assert attempt["processor_reference"] is None and attempt["maybe_sent"] is False
    assert "before the request was sent" in attempt["last_error"]
    assert await intents_of(localstripe_url, created["id"]) == []
    # Stripe back: the payment goes through, once.
    await make_due(stripe_container, created["id"])
    await drain(payments_pump(stripe_container))
    assert (await get(sapi, merchant, created["id"]))["status"] == "succeeded"
    assert len(await intents_of(localstripe_url, created["id"])) == 1


async def test_a_refused_api_key_ends_in_a_dead_letter_for_the_operator_and_charges_nothing(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    async with running_proxy(localstripe_url) as proxy:
        proxy.arm(Fault("/v1/payment_methods", "fail", status=401, times=100))  # Stripe: 401 Invalid API Key
        stripe = StripeProcessor("sk_test_revoked", api_base=proxy.url, timeout=5.0)
        try:
            created = await pay(sapi, merchant)
            await drain(payments_pump(stripe_container, stripe, max_tries=2))
        finally:
            await stripe.aclose()
    p = await get(sapi, merchant, created["id"])
    assert p["status"] == "processing"  # never failed on a guess, never charged
    assert await intents_of(localstripe_url, created["id"]) == []
    rows = await query(
        stripe_container, "SELECT status, last_error FROM dead_letters WHERE object_id = %s", created["id"]
    )
    assert [r["status"] for r in rows] == ["open"]
    assert "TENDER_STRIPE_SECRET_KEY" in rows[0]["last_error"]


async def test_asking_for_an_unknown_or_unconfigured_processor_is_a_400_naming_it(
    sapi: httpx.AsyncClient, api: httpx.AsyncClient, merchant: Any
) -> None:
    r = await sapi.post("/v1/payments", json=card_payment(processor="acme"), headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "processor", r.text
    # The session's default container has no Stripe key: the stripe processor is off there.
    r = await api.post("/v1/payments", json=card_payment(processor="stripe"), headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "processor", r.text
    assert "not configured" in r.json()["error"]["message"]
    upi = {**card_payment(processor="stripe"), "payment_method": {"type": "upi", "upi": {"vpa": "shopper@bank"}}}
    r = await sapi.post("/v1/payments", json=upi, headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "payment_method.type", r.text
    # The simulator stays the default, and can be asked for by name.
    r = await sapi.post("/v1/payments", json=card_payment(processor="simulator"), headers=auth(merchant.secret_key))
    assert r.status_code == 202 and r.json()["processor"] == "simulator"
    assert r.json()["processor_reference"] is None
