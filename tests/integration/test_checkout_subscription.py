"""The hosted checkout and recurring payments over HTTP without a browser (the page's form as a plain POST):
`mode: "subscription"` (the card entered is saved, a customer made if the session had none, the subscription
started, the session complete when its first invoice is paid; a trial completes it at once; a decline cancels
that subscription when another card starts a new one, or when the session expires) and `setup_future_usage` on
a payment-mode session. The browser test (tests/browser/test_checkout_subscription_page.py) drives the same page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tender.worker.pumps import ExpiryPump
from tests.support.api import auth
from tests.support.checkout import FORM, card_form, new_session, page_path
from tests.support.payments import authorizer, drain

pytestmark = pytest.mark.integration

DECLINED = "4000000000009995"


def subscription_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mode": "subscription",
        "subscription": {"amount": 1990, "currency": "BRL", "interval": "month"},
        "success_url": "https://shop.example/welcome",
        "cancel_url": "https://shop.example/plans",
        "description": "Gold plan",
    }
    body.update(overrides)
    return body


async def create(api: Any, merchant: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post("/v1/checkout/sessions", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def get(api: Any, merchant: Any, path: str) -> dict[str, Any]:
    r = await api.get(path, headers=auth(merchant.secret_key))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def customer(api: Any, merchant: Any) -> str:
    r = await api.post("/v1/customers", json={"email": "jo@example.com"}, headers=auth(merchant.secret_key))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"subscription": None}, "subscription"),
        ({"amount": 1990}, "amount"),
        ({"processor": "stripe"}, "processor"),
        ({"payment_method_types": ["card", "upi"]}, "payment_method_types"),
        ({"setup_future_usage": "off_session"}, "setup_future_usage"),
        ({"subscription": {"amount": 1990, "currency": "XXQ", "interval": "month"}}, "subscription.currency"),
        ({"subscription": {"amount": 0, "currency": "BRL", "interval": "month"}}, "subscription.amount"),
        ({"subscription": {"amount": 10, "currency": "BRL", "interval": "fortnight"}}, "subscription.interval"),
        (
            {"subscription": {"amount": 10, "currency": "BRL", "interval": "month", "interval_count": 13}},
            "subscription.interval_count",
        ),
        (
            {"subscription": {"amount": 10, "currency": "BRL", "interval": "day", "trial_days": 731}},
            "subscription.trial_days",
        ),
        ({"customer": "cus_" + "0" * 26}, "customer"),
        ({"mode": "rent"}, "mode"),
    ],
)
async def test_a_bad_subscription_session_is_a_400_naming_the_field(
    api: Any, merchant: Any, overrides: dict[str, Any], param: str
) -> None:
    body = {k: v for k, v in subscription_body(**overrides).items() if v is not None}
    r = await api.post("/v1/checkout/sessions", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_payment_mode_still_needs_amount_currency_and_reference(api: Any, merchant: Any) -> None:
    base = {"success_url": "https://shop.example/a", "cancel_url": "https://shop.example/b"}
    for missing in ("amount", "currency", "reference"):
        body = {"amount": 100, "currency": "BRL", "reference": "o-1", **base}
        del body[missing]
        r = await api.post("/v1/checkout/sessions", json=body, headers=auth(merchant.secret_key))
        assert (r.status_code, r.json()["error"]["param"]) == (400, missing), r.text
    with_plan = {
        "amount": 100,
        "currency": "BRL",
        "reference": "o-2",
        **base,
        "subscription": subscription_body()["subscription"],
    }
    r = await api.post("/v1/checkout/sessions", json=with_plan, headers=auth(merchant.secret_key))
    assert (r.status_code, r.json()["error"]["param"]) == (400, "subscription")
    r = await api.post(
        "/v1/checkout/sessions",
        json={"amount": 100, "currency": "BRL", "reference": "o-3", **base, "setup_future_usage": "off_session"},
        headers=auth(merchant.secret_key),
    )
    assert (r.status_code, r.json()["error"]["param"]) == (400, "customer")


async def test_the_card_entered_starts_the_subscription(api: Any, container: Any, merchant: Any) -> None:
    session = await create(api, merchant, subscription_body())
    assert (session["mode"], session["amount"], session["currency"]) == ("subscription", 1990, "BRL")
    assert session["reference"] == session["id"] and session["customer"] is None and session["subscription"] is None
    page = await api.get(page_path(session))
    assert "19.90 BRL / month" in page.text and "Subscribe" in page.text and "every month" in page.text

    posted = await api.post(page_path(session) + "/pay", content=card_form(), headers=FORM)
    assert posted.status_code == 303
    started = await get(api, merchant, f"/v1/checkout/sessions/{session['id']}")
    assert started["status"] == "open" and started["customer"].startswith("cus_")
    sub_id, payment_id = started["subscription"], started["payment"]
    assert sub_id.startswith("sub_") and payment_id.startswith("pay_")

    await drain(authorizer(container))
    done = await get(api, merchant, f"/v1/checkout/sessions/{session['id']}")
    assert done["status"] == "complete"
    payment = await get(api, merchant, f"/v1/payments/{payment_id}")
    assert (payment["status"], payment["amount"], payment["off_session"]) == ("succeeded", 1990, True)
    assert payment["checkout_session"] == session["id"]  # the session's payment: counted, and completes it
    subscription = await get(api, merchant, f"/v1/subscriptions/{sub_id}")
    assert subscription["status"] == "active" and subscription["customer"] == started["customer"]
    methods = await get(api, merchant, f"/v1/customers/{started['customer']}/payment_methods")
    [saved] = methods["data"]
    assert saved["card"]["last4"] == "4242" and payment["payment_method"]["id"] == saved["id"]
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT v.cvc_ct FROM payment_methods m JOIN vault_cards v ON v.id = m.card_id WHERE m.id = %s",
            (saved["id"],),
        )
        assert (await cur.fetchone())["cvc_ct"] is None
    back = await api.get(page_path(session))
    assert "Subscription started" in back.text and "https://shop.example/welcome?session_id=" in back.text


async def test_a_trial_completes_the_session_at_once_on_the_sessions_customer(
    api: Any, container: Any, merchant: Any
) -> None:
    cus = await customer(api, merchant)
    plan = {"amount": 990, "currency": "BRL", "interval": "week", "trial_days": 14}
    session = await create(api, merchant, subscription_body(subscription=plan, customer=cus, reference="trial-1"))
    page = await api.get(page_path(session))
    assert "14 days free" in page.text and "Start trial" in page.text
    assert (await api.post(page_path(session) + "/pay", content=card_form(), headers=FORM)).status_code == 303
    done = await get(api, merchant, f"/v1/checkout/sessions/{session['id']}")
    assert (done["status"], done["payment"], done["customer"]) == ("complete", None, cus)
    subscription = await get(api, merchant, f"/v1/subscriptions/{done['subscription']}")
    assert subscription["status"] == "trialing"


async def test_a_decline_then_another_card_cancels_the_first_subscription(
    api: Any, container: Any, merchant: Any
) -> None:
    session = await create(api, merchant, subscription_body(reference="decline-1"))
    await api.post(page_path(session) + "/pay", content=card_form(DECLINED), headers=FORM)
    await drain(authorizer(container))
    first = await get(api, merchant, f"/v1/checkout/sessions/{session['id']}")
    assert first["status"] == "open"
    assert (await get(api, merchant, f"/v1/payments/{first['payment']}"))["status"] == "failed"
    assert "Your card was declined" in (await api.get(page_path(session))).text

    await api.post(page_path(session) + "/pay", content=card_form(), headers=FORM)
    await drain(authorizer(container))
    done = await get(api, merchant, f"/v1/checkout/sessions/{session['id']}")
    assert done["status"] == "complete" and done["subscription"] != first["subscription"]
    assert done["customer"] == first["customer"]  # the same shopper, a second card
    assert (await get(api, merchant, f"/v1/subscriptions/{first['subscription']}"))["status"] == "canceled"
    assert (await get(api, merchant, f"/v1/subscriptions/{done['subscription']}"))["status"] == "active"


async def test_an_expired_session_cancels_its_unpaid_subscription(api: Any, container: Any, merchant: Any) -> None:
    session = await create(api, merchant, subscription_body(reference="expire-1", expires_in=60))
    await api.post(page_path(session) + "/pay", content=card_form(DECLINED), headers=FORM)
    await drain(authorizer(container))
    async with container.db.connection() as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await conn.execute(
            "UPDATE checkout_sessions SET expires_at = %s, next_run_at = %s WHERE id = %s", (past, past, session["id"])
        )
    await ExpiryPump(container.db, lease_seconds=30).run_batch(100)
    expired = await get(api, merchant, f"/v1/checkout/sessions/{session['id']}")
    assert expired["status"] == "expired"
    assert (await get(api, merchant, f"/v1/subscriptions/{expired['subscription']}"))["status"] == "canceled"


async def test_a_payment_session_with_setup_future_usage_saves_the_card(
    api: Any, container: Any, merchant: Any
) -> None:
    cus = await customer(api, merchant)
    session = await new_session(api, merchant, "save-1", customer=cus, setup_future_usage="off_session")
    assert (session["mode"], session["customer"], session["setup_future_usage"]) == ("payment", cus, "off_session")
    await api.post(page_path(session) + "/pay", content=card_form(), headers=FORM)
    await drain(authorizer(container))
    done = await get(api, merchant, f"/v1/checkout/sessions/{session['id']}")
    assert done["status"] == "complete"
    payment = await get(api, merchant, f"/v1/payments/{done['payment']}")
    [saved] = (await get(api, merchant, f"/v1/customers/{cus}/payment_methods"))["data"]
    assert payment["payment_method"]["id"] == saved["id"] and payment["customer"] == cus
