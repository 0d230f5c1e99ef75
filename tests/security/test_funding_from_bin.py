"""Finding 2: "A merchant's own `card.funding` decides the fee and when money is available"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import auth, card_payment
from tests.support.money import assert_ledger_clean, payables_of, query
from tests.support.payments import (
    attempt_of,
    authorizer,
    drain,
    get,
    notification_for,
    pay,
    shopper_decides,
    three_ds_payment,
)

pytestmark = pytest.mark.integration

CREDIT = "4242424242424242"
PREPAID = "5105105105105100"
# Tender's BIN table calls this credit (its range, 620000, is); the simulated issuer knows the account is debit.
ISSUER_SAYS_DEBIT = "6200000000000047"


async def payments_of(container: Any, merchant_id: str) -> int:
    rows = await query(container, "SELECT count(*) AS n FROM payments WHERE merchant_id = %s", merchant_id)
    return int(rows[0]["n"])


async def vault_funding(container: Any, payment_id: str) -> str:
    rows = await query(
        container, "SELECT v.funding FROM vault_cards v JOIN payments p ON p.card_id = v.id WHERE p.id = %s", payment_id
    )
    return str(rows[0]["funding"])


@pytest.mark.parametrize("declared", ["debit", "credit", "prepaid", None, "bogus"])
async def test_a_declared_funding_is_refused_and_nothing_is_written(
    api: Any, container: Any, merchant: Any, declared: str | None
) -> None:
    body = card_payment(CREDIT)
    body["payment_method"]["card"]["funding"] = declared
    r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (
        "payment_method.card.funding", "parameter_unknown", "invalid_request_error",
    )  # fmt: skip
    assert "payment_method.card.funding" in error["message"] and CREDIT not in r.text
    assert await payments_of(container, merchant.merchant.id) == 0


async def test_a_credit_card_pays_the_credit_fee_whatever_the_merchant_would_say(
    api: Any, container: Any, merchant: Any
) -> None:
    created = await pay(api, merchant, CREDIT, amount=10000, currency="BRL")
    assert created["payment_method"]["card"]["funding"] == "credit"
    await drain(authorizer(container))
    [payable] = await payables_of(container, merchant.merchant.id)
    # API.md default plan: credit 5 %, waiting_funds, 30 days (not debit's 3 % paid today).
    assert (payable["funding"], payable["fee"], payable["status"]) == ("credit", 500, "waiting_funds")
    assert payable["payment_date"] >= datetime.now(UTC).date() + timedelta(days=29)


async def test_the_processors_funding_wins_over_the_bin_table(api: Any, container: Any, merchant: Any) -> None:
    created = await pay(api, merchant, ISSUER_SAYS_DEBIT, amount=10000, currency="BRL")
    assert created["payment_method"]["card"]["funding"] == "credit"  # the BIN table's guess, before any answer
    await drain(authorizer(container))
    payment = await get(api, merchant, created["id"])
    assert (payment["status"], payment["payment_method"]["card"]["funding"]) == ("succeeded", "debit")
    assert await vault_funding(container, created["id"]) == "debit"
    [payable] = await payables_of(container, merchant.merchant.id)
    assert (payable["funding"], payable["fee"], payable["status"]) == ("debit", 300, "paid")  # 3 %, paid at once
    # The event the merchant receives shows the same truth (recorded in the same transaction).
    [event] = await query(
        container, "SELECT data FROM events WHERE object_id = %s AND type = 'payment.succeeded'", created["id"]
    )
    assert event["data"]["object"]["payment_method"]["card"]["funding"] == "debit"
    await assert_ledger_clean(container)


async def test_funding_reported_at_authorization_decides_a_later_capture(
    api: Any, container: Any, merchant: Any
) -> None:
    created = await pay(api, merchant, ISSUER_SAYS_DEBIT, amount=10000, currency="BRL", capture=False)
    await drain(authorizer(container))
    held = await get(api, merchant, created["id"])
    assert (held["status"], held["payment_method"]["card"]["funding"]) == ("requires_capture", "debit")
    r = await api.post(f"/v1/payments/{created['id']}/capture", json={}, headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    await drain(authorizer(container))
    [payable] = await payables_of(container, merchant.merchant.id)
    assert (payable["funding"], payable["fee"], payable["status"]) == ("debit", 300, "paid")


async def test_a_processor_notification_carries_funding_too(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await three_ds_payment(api, container, merchant)
    assert p["payment_method"]["card"]["funding"] == "credit"
    await shopper_decides(simulator_url, p, "approve")
    reference = (await attempt_of(container, p["id"]))["id"]
    body, headers = await notification_for(
        simulator_url, reference, card={"brand": "visa", "last4": "3184", "funding": "debit"}
    )
    r = await api.post("/webhooks/simulator", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["payment_method"]["card"]["funding"]) == ("succeeded", "debit")
    [payable] = await payables_of(container, merchant.merchant.id)
    assert (payable["funding"], payable["fee"], payable["status"]) == ("debit", 75, "paid")  # 3 % of 2500


async def test_a_funding_a_processor_does_not_know_changes_nothing(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await three_ds_payment(api, container, merchant)
    await shopper_decides(simulator_url, p, "approve")
    reference = (await attempt_of(container, p["id"]))["id"]
    body, headers = await notification_for(simulator_url, reference, card={"funding": "charge"})
    assert (await api.post("/webhooks/simulator", content=body, headers=headers)).json()["outcome"] == "applied"
    assert (await get(api, merchant, p["id"]))["payment_method"]["card"]["funding"] == "credit"
    [payable] = await payables_of(container, merchant.merchant.id)
    assert (payable["funding"], payable["fee"]) == ("credit", 125)


async def test_a_prepaid_card_takes_the_other_rule(api: Any, container: Any, merchant: Any) -> None:
    created = await pay(api, merchant, PREPAID, amount=10000, currency="BRL")
    assert created["payment_method"]["card"]["funding"] == "prepaid"
    await drain(authorizer(container))
    [payable] = await payables_of(container, merchant.merchant.id)
    # Default plan: neither debit's paid-at-once nor credit's 30 days: "other", 2 %, 2 days.
    assert (payable["funding"], payable["fee"], payable["status"]) == ("other", 200, "waiting_funds")
    assert payable["payment_date"] >= datetime.now(UTC).date() + timedelta(days=1)
