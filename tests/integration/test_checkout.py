"""Hosted checkout over HTTP without a browser: sessions (/v1/checkout/sessions), the page's card form as a
plain form POST (the no-JavaScript path), completion with the payment, and expiry by the pump.
The browser tests (tests/browser) drive the same pages in Chromium."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest

from tender.worker.pumps import ExpiryPump
from tests.support.api import auth
from tests.support.checkout import FORM, card_form, events_of, new_session, page_path, session_body
from tests.support.payments import authorizer, drain

pytestmark = pytest.mark.integration


async def test_a_session_is_registered_once_per_reference(api: Any, merchant: Any) -> None:
    h = auth(merchant.secret_key)
    first = await new_session(api, merchant, "order-7")
    assert first["id"].startswith("cs_") and first["status"] == "open" and first["payment"] is None
    assert first["url"].endswith("/checkout/" + first["id"]) and first["expires_at"] > first["created"]
    again = await api.post("/v1/checkout/sessions", json=session_body("order-7"), headers=h)
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    other = await api.post("/v1/checkout/sessions", json=session_body("order-7", amount=999), headers=h)
    assert other.status_code == 409 and other.json()["error"]["checkout_session"] == first["id"]
    got = (await api.get(f"/v1/checkout/sessions/{first['id']}", headers=h)).json()
    assert got == first
    listed = (await api.get("/v1/checkout/sessions", headers=h)).json()
    assert [s["id"] for s in listed["data"]] == [first["id"]]


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"amount": 0}, "amount"),
        ({"currency": "XXQ"}, "currency"),
        ({"success_url": "javascript:alert(1)"}, "success_url"),
        ({"cancel_url": "/relative"}, "cancel_url"),
        ({"payment_method_types": ["crypto"]}, "payment_method_types[0]"),
        ({"expires_in": 5}, "expires_in"),
        ({"reference": ""}, "reference"),
    ],
)
async def test_a_bad_session_is_a_400_naming_the_field(
    api: Any, merchant: Any, overrides: dict[str, Any], param: str
) -> None:
    r = await api.post(
        "/v1/checkout/sessions", json=session_body("order-x", **overrides), headers=auth(merchant.secret_key)
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_the_page_shows_the_order_and_sends_security_headers(api: Any, merchant: Any) -> None:
    session = await new_session(api, merchant, amount=123456, currency="JPY")
    r = await api.get(page_path(session))
    assert r.status_code == 200
    assert "123456 JPY" in r.text and "Order #1" in r.text and merchant.merchant.name in r.text
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    for field in ("number", "expiry", "cvc", "holder_name"):
        assert re.search(rf'<label for="{field}">', r.text), field  # every input has its label
    assert (await api.get("/checkout/cs_nope")).status_code == 404


async def test_paying_by_form_completes_the_session_once_however_often_pay_is_clicked(
    api: Any, container: Any, merchant: Any
) -> None:
    session = await new_session(api, merchant)
    path = page_path(session)
    first = await api.post(path + "/pay", content=card_form(), headers=FORM)
    second = await api.post(path + "/pay", content=card_form(), headers=FORM)  # a double click
    assert first.status_code == second.status_code == 303 and first.headers["location"] == path
    processing = await api.get(path)
    assert "Payment processing" in processing.text and "don't close this page" in processing.text
    assert '<meta http-equiv="refresh" content="2">' in processing.text  # without JavaScript it polls itself

    await drain(authorizer(container))
    h = auth(merchant.secret_key)
    done = (await api.get(f"/v1/checkout/sessions/{session['id']}", headers=h)).json()
    assert done["status"] == "complete" and done["payment"]
    payments = (await api.get("/v1/payments", headers=h)).json()["data"]
    assert [p["id"] for p in payments] == [done["payment"]]  # one payment for two clicks
    assert payments[0]["checkout_session"] == session["id"] and payments[0]["status"] == "succeeded"
    [completed] = await events_of(api, merchant, "checkout.session.completed")
    assert completed["data"]["object"]["id"] == session["id"] and completed["data"]["object"]["status"] == "complete"

    back = await api.get(path)
    target = f"https://shop.example/thanks?order=1&amp;session_id={session['id']}&amp;status=succeeded"
    assert "Payment successful" in back.text and target in back.text
    # A paid session takes no second payment, and the same reference answers the paid session.
    assert (await api.post(path + "/pay", content=card_form(), headers=FORM)).status_code == 200
    again = await api.post("/v1/checkout/sessions", json=session_body("order-1"), headers=h)
    assert again.status_code == 200 and again.json()["status"] == "complete"


async def test_a_decline_lets_the_shopper_try_another_card(api: Any, container: Any, merchant: Any) -> None:
    session = await new_session(api, merchant)
    path = page_path(session)
    await api.post(path + "/pay", content=card_form("4000000000009995"), headers=FORM)
    await drain(authorizer(container))
    retry = await api.get(path)
    # Never why (finding 6, tests/security/test_generic_decline_on_page.py): a card tester would learn from it.
    assert "Your card was declined. Try another card." in retry.text and 'id="pay-form"' in retry.text
    assert "insufficient funds" not in retry.text
    await api.post(path + "/pay", content=card_form(), headers=FORM)
    await drain(authorizer(container))
    h = auth(merchant.secret_key)
    statuses = sorted(p["status"] for p in (await api.get("/v1/payments", headers=h)).json()["data"])
    assert statuses == ["failed", "succeeded"]
    assert (await api.get(f"/v1/checkout/sessions/{session['id']}", headers=h)).json()["status"] == "complete"


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"number": "4242424242424241"}, "number", "card number"),
        ({"expiry": "13/30"}, "expiry", "month"),
        ({"expiry": "1030"}, "expiry", "MM/YY"),
        ({"expiry": "01/20"}, "expiry", "expired"),
        ({"cvc": "1"}, "cvc", "cvc"),
    ],
)
async def test_a_bad_card_reshows_the_form_naming_the_field_and_never_the_number(
    api: Any, container: Any, merchant: Any, form: dict[str, str], field: str, message: str
) -> None:
    session = await new_session(api, merchant)
    values = {"number": "4242424242424242", "expiry": "10/30", "cvc": "123", **form}
    r = await api.post(page_path(session) + "/pay", content=urlencode(values), headers=FORM)
    assert r.status_code == 400
    assert message.lower() in r.text.lower()
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', r.text, re.S), r.text
    assert values["number"] not in r.text and 'value="123"' not in r.text
    h = auth(merchant.secret_key)
    assert (await api.get("/v1/payments", headers=h)).json()["data"] == []  # nothing half-written
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM vault_cards WHERE merchant_id = %s", (merchant.merchant.id,)
        )
        assert (await cur.fetchone())["n"] == 0


async def test_an_open_session_expires_by_the_pump_or_on_request(api: Any, container: Any, merchant: Any) -> None:
    h = auth(merchant.secret_key)
    old = await new_session(api, merchant, "order-old", expires_in=60)
    async with container.db.connection() as conn:
        await conn.execute(
            "UPDATE checkout_sessions SET expires_at = now() - interval '1 s', next_run_at = now() WHERE id = %s",
            (old["id"],),
        )
    await ExpiryPump(container.db).run_batch(100)
    assert (await api.get(f"/v1/checkout/sessions/{old['id']}", headers=h)).json()["status"] == "expired"
    page = await api.get(page_path(old))
    assert page.status_code == 410 and "expired" in page.text
    assert (await api.post(page_path(old) + "/pay", content=card_form(), headers=FORM)).status_code == 410
    # The reference is free again: a new session for the same order.
    fresh = await new_session(api, merchant, "order-old")
    assert fresh["id"] != old["id"]
    r = await api.post(f"/v1/checkout/sessions/{fresh['id']}/expire", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "expired"
    r = await api.post(f"/v1/checkout/sessions/{fresh['id']}/expire", headers=h)
    assert r.status_code == 400
    expired = await events_of(api, merchant, "checkout.session.expired")
    assert {e["data"]["object"]["id"] for e in expired} == {old["id"], fresh["id"]}


async def test_cancel_goes_back_to_the_shop(api: Any, merchant: Any) -> None:
    session = await new_session(api, merchant)
    r = await api.get(page_path(session) + "/cancel")
    assert r.status_code == 303 and r.headers["location"] == "https://shop.example/cart"


async def test_a_session_stops_taking_cards_after_ten_attempts(api: Any, container: Any, merchant: Any) -> None:
    """Card testing: a list of stolen cards tried on one page."""
    session = await new_session(api, merchant)
    path = page_path(session)
    for _ in range(10):
        assert (await api.post(path + "/pay", content=card_form("4000000000000002"), headers=FORM)).status_code == 303
        await drain(authorizer(container))
        async with container.db.connection() as conn:  # out of the velocity window (5 declines per session)
            await conn.execute(
                "UPDATE payments SET updated = updated - interval '2 hours' WHERE checkout_session_id = %s",
                (session["id"],),
            )
    r = await api.post(path + "/pay", content=card_form(), headers=FORM)
    assert r.status_code == 400 and "Too many payment attempts" in r.text
    assert (
        len((await api.get("/v1/payments", params={"limit": 100}, headers=auth(merchant.secret_key))).json()["data"])
        == 10
    )


async def test_the_attempt_limit_comes_from_the_settings(
    api: Any, container: Any, merchant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TENDER_CHECKOUT_MAX_PAYMENTS, read by the page from the container's settings at each payment."""
    monkeypatch.setattr(container.settings, "checkout_max_payments", 2)
    path = page_path(await new_session(api, merchant))
    for _ in range(2):
        assert (await api.post(path + "/pay", content=card_form("4000000000000002"), headers=FORM)).status_code == 303
        await drain(authorizer(container))
    r = await api.post(path + "/pay", content=card_form(), headers=FORM)
    assert r.status_code == 400 and "Too many payment attempts" in r.text


async def test_a_wallet_payment_goes_to_the_providers_page_and_completes_the_session(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    from tests.support.payments import shopper_decides

    session = await new_session(api, merchant, payment_method_types=["card", "wallet", "upi"])
    path = page_path(session)
    page = await api.get(path)
    assert 'id="pay-wallet"' in page.text and 'id="pay-upi"' in page.text and 'id="pay-form"' in page.text
    r = await api.post(path + "/pay_method", content=urlencode({"type": "wallet"}), headers=FORM)
    assert r.status_code == 303
    await drain(authorizer(container))
    h = auth(merchant.secret_key)
    [payment] = (await api.get("/v1/payments", headers=h)).json()["data"]
    assert payment["status"] == "requires_action" and payment["payment_method"]["type"] == "wallet"
    handoff = await api.get(path)
    assert "Continue to your wallet" in handoff.text and payment["next_action"]["url"] in handoff.text
    back = await shopper_decides(simulator_url, payment, "approve")
    assert back.status_code == 303 and back.headers["location"] == session["url"] + "?returned=1"
    waiting = await api.get(path, params={"returned": "1"})  # back before Tender heard: wait, don't bounce
    assert "Payment processing" in waiting.text and 'id="back-to-bank"' in waiting.text
    # No notification in this test: coming back made the payment due for a look-up at once.
    await drain(authorizer(container))
    assert (await api.get(f"/v1/checkout/sessions/{session['id']}", headers=h)).json()["status"] == "complete"
    assert "Payment successful" in (await api.get(path)).text


async def test_upi_waits_for_the_shoppers_app_and_a_bad_vpa_is_named(api: Any, container: Any, merchant: Any) -> None:
    session = await new_session(api, merchant, payment_method_types=["upi"])
    path = page_path(session)
    page = await api.get(path)
    assert 'id="pay-form"' not in page.text and 'id="vpa"' in page.text  # no card form when cards are off
    bad = await api.post(path + "/pay_method", content=urlencode({"type": "upi", "vpa": "not a vpa"}), headers=FORM)
    assert bad.status_code == 400 and "name@bank" in bad.text
    assert re.search(r'id="vpa"[^>]*aria-invalid="true"', bad.text, re.S)
    card = await api.post(path + "/pay", content=card_form(), headers=FORM)
    assert card.status_code == 400 and "not offered" in card.text
    r = await api.post(path + "/pay_method", content=urlencode({"type": "upi", "vpa": "shopper@okbank"}), headers=FORM)
    assert r.status_code == 303
    await drain(authorizer(container))
    waiting = await api.get(path)
    assert (
        "Approve the payment request in your UPI app" in waiting.text
        and 'data-status="requires_action"' in waiting.text
    )
