"""Reconciliation against Stripe's list APIs, on localstripe: Tender's Stripe payments (succeeded, declined) and
a refund through Tender match; a PaymentIntent charged directly at Stripe and a refund made there are missing in
Tender; a PaymentIntent registered and never confirmed is no charge at all.

localstripe is shared by the session's Stripe tests (and refuses the `created` filter, so every page is read and
the day applied by Tender), so the assertions name this test's own objects rather than counting the day's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tender.domain.reconciliation import ChargeStatus, RecordKind
from tender.domain.retry import RetryPolicy
from tender.processors.stripe import StripeProcessor
from tender.services import reconciliation
from tender.worker.pumps import PaymentPump
from tests.support.api import auth, card_payment
from tests.support.localstripe import KEY
from tests.support.payments import drain
from tests.support.refunds import drain_refunds, refund
from tests.support.refunds import pump as refund_pump

pytestmark = pytest.mark.integration

DECLINED = "4000000000000341"  # localstripe: attaches, then declined when charged


async def paid(sapi: httpx.AsyncClient, c: Any, merchant: Any, number: str = "4242424242424242") -> dict[str, Any]:
    r = await sapi.post(
        "/v1/payments", json=card_payment(number, processor="stripe"), headers=auth(merchant.secret_key)
    )
    assert r.status_code == 202, r.text
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0)
    await drain(PaymentPump(c.db, c.vault, c.processors, lease_seconds=30, retry=policy))
    return dict((await sapi.get(f"/v1/payments/{r.json()['id']}", headers=auth(merchant.secret_key))).json())


async def at_stripe(url: str, path: str, data: dict[str, Any]) -> dict[str, Any]:
    """A call made directly at Stripe (its Dashboard, another integration): Tender knows nothing of it."""
    async with httpx.AsyncClient(base_url=url, auth=(KEY, "")) as client:
        r = await client.post(path, data=data)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_stripe_records_against_tenders(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    c = stripe_container
    succeeded = await paid(sapi, c, merchant)
    declined = await paid(sapi, c, merchant, DECLINED)
    assert (succeeded["status"], declined["status"]) == ("succeeded", "failed")
    r = await refund(sapi, merchant, {"payment": succeeded["id"], "amount": 400})
    assert r.status_code == 202, r.text
    await drain_refunds(refund_pump(c))
    ours_refund = r.json()["id"]

    card = {"card[number]": "4242424242424242", "card[exp_month]": "10", "card[exp_year]": "2030", "card[cvc]": "123"}
    method = await at_stripe(localstripe_url, "/v1/payment_methods", {"type": "card", **card})
    direct = await at_stripe(
        localstripe_url,
        "/v1/payment_intents",
        {"amount": "1800", "currency": "brl", "payment_method": method["id"], "confirm": "true"},
    )
    assert direct["status"] == "succeeded"
    direct_refund = await at_stripe(localstripe_url, "/v1/refunds", {"payment_intent": direct["id"], "amount": "500"})
    method = await at_stripe(localstripe_url, "/v1/payment_methods", {"type": "card", **card})
    never_confirmed = await at_stripe(
        localstripe_url, "/v1/payment_intents", {"amount": "900", "currency": "brl", "payment_method": method["id"]}
    )
    assert never_confirmed["status"] == "requires_confirmation"

    stripe = c.processors["stripe"]
    assert isinstance(stripe, StripeProcessor)
    # What the processor's side reads (one page of 100 at most: more pages when the session made more).
    now = datetime.now(UTC)
    records = {r.processor_id: r for r in await stripe.list_records(now.replace(hour=0, minute=0, second=0), now)}
    assert records[never_confirmed["id"]].status is ChargeStatus.INCOMPLETE
    assert records[direct["id"]].status is ChargeStatus.SUCCEEDED and records[direct["id"]].amount_captured == 1800
    assert records[direct["id"]].reference is None and records[direct_refund["id"]].kind is RecordKind.REFUND
    assert records[succeeded["processor_reference"]].reference is not None  # Tender's attempt, from the metadata

    result = await reconciliation.run(c.db, stripe, now.date(), UTC)
    assert result.report is not None
    report = reconciliation.report_object(result.report)
    in_findings = {
        (kind, f["processor_id"]): f
        for kind in ("missing_in_tender", "missing_at_processor", "mismatched")
        for f in report[kind]
    }
    assert ("missing_in_tender", direct["id"]) in in_findings
    assert in_findings[("missing_in_tender", direct["id"])]["type"] == "charge"
    assert in_findings[("missing_in_tender", direct_refund["id"])]["type"] == "refund"
    named = {f["reference"] for f in in_findings.values()} | {pid for _, pid in in_findings}
    for ours in (succeeded["processor_reference"], declined["processor_reference"], ours_refund, never_confirmed["id"]):
        assert ours not in named, ours
    assert report["matched"] >= 3  # at least this test's succeeded and declined payments and its refund
