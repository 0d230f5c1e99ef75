"""Finding 5: "The hosted page's expiry accepts Unicode digits (`²/30`) and crashes": ASCII digits only, everywhere
input is parsed (the hosted page, the API, processor notifications, the simulator)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.support.api import auth, card_payment
from tests.support.checkout import FORM, new_session, page_path

pytestmark = pytest.mark.integration

SUPERSCRIPT_TWO = "\u00b2"  # "²": str.isdigit() is true, int() raises


def arabic(digits: str) -> str:
    """The same number in Arabic-Indic digits, which int() and Decimal() read as ASCII ones."""
    return "".join(chr(0x0660 + int(d)) if d.isdigit() else d for d in digits)


def fullwidth(digits: str) -> str:
    return "".join(chr(0xFF10 + int(d)) if d.isdigit() else d for d in digits)


EXPIRIES = [
    f"{SUPERSCRIPT_TWO}/30",
    arabic("10/30"),
    "10/" + fullwidth("30"),
    fullwidth("10") + "/30",
    "10/2" + fullwidth("0") + "30",
]


def form(expiry: str, number: str = "4242424242424242", cvc: str = "123") -> dict[str, str]:
    return {"number": number, "expiry": expiry, "cvc": cvc, "holder_name": "Leia Organa"}


async def session_payment(api: Any, merchant: Any, session: dict[str, Any]) -> Any:
    r = await api.get(f"/v1/checkout/sessions/{session['id']}", headers=auth(merchant.secret_key))
    return r.json()["payment"]


@pytest.mark.parametrize("expiry", EXPIRIES)
async def test_the_hosted_pages_expiry_takes_ascii_digits_only(api: Any, merchant: Any, expiry: str) -> None:
    session = await new_session(api, merchant, f"digits-{EXPIRIES.index(expiry)}")
    r = await api.post(page_path(session) + "/pay", data=form(expiry), headers=FORM)
    assert r.status_code == 400, r.text[:300]
    assert re.search(r'name="expiry"[^>]*aria-invalid="true"', r.text)
    assert "MM/YY" in r.text
    assert await session_payment(api, merchant, session) is None


@pytest.mark.parametrize(
    ("number", "cvc", "field"),
    [(fullwidth("4242424242424242"), "123", "number"), ("4242424242424242", arabic("123"), "cvc")],
)
async def test_the_hosted_pages_card_number_and_cvc_take_ascii_digits_only(
    api: Any, merchant: Any, number: str, cvc: str, field: str
) -> None:
    session = await new_session(api, merchant, f"digits-{field}")
    r = await api.post(page_path(session) + "/pay", data=form("10/30", number, cvc), headers=FORM)
    assert r.status_code == 400 and re.search(rf'name="{field}"[^>]*aria-invalid="true"', r.text)
    assert await session_payment(api, merchant, session) is None


@pytest.mark.parametrize(
    ("card", "param"),
    [
        ({"number": fullwidth("4242424242424242")}, "payment_method.card.number"),
        ({"number": "4242 4242 4242 " + arabic("4242")}, "payment_method.card.number"),
        ({"cvc": fullwidth("123")}, "payment_method.card.cvc"),
        ({"cvc": "\u00b2\u00b3\u00b9"}, "payment_method.card.cvc"),
        ({"exp_month": fullwidth("10")}, "payment_method.card.exp_month"),
        ({"exp_year": arabic("2030")}, "payment_method.card.exp_year"),
    ],
)
async def test_the_api_takes_ascii_digits_only(api: Any, merchant: Any, card: dict[str, Any], param: str) -> None:
    body = card_payment()
    body["payment_method"]["card"].update(card)
    r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


@pytest.mark.parametrize("amount", [fullwidth("2500"), "2500", SUPERSCRIPT_TWO])
async def test_amounts_are_json_integers_not_strings_of_any_digits(api: Any, merchant: Any, amount: str) -> None:
    r = await api.post("/v1/payments", json=card_payment(amount=amount), headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "amount"


@pytest.mark.parametrize("limit", [arabic("3"), fullwidth("3"), SUPERSCRIPT_TWO])
async def test_query_integers_take_ascii_digits_only(api: Any, merchant: Any, limit: str) -> None:
    r = await api.get("/v1/payments", params={"limit": limit}, headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"


@pytest.mark.parametrize("timestamp", [SUPERSCRIPT_TWO, "\u00b9\u00b2\u00b3", "9" * 5000])
async def test_a_notification_timestamp_of_other_digits_is_a_bad_signature_not_a_500(api: Any, timestamp: str) -> None:
    # Header bytes are read as latin-1, where the superscripts are single bytes.
    headers = {"Simulator-Signature": f"t={timestamp},v1=00".encode("latin-1"), "Content-Type": b"application/json"}
    r = await api.post("/webhooks/simulator", content=b"{}", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_signature"


async def test_a_vpa_is_ascii_even_where_lower_casing_would_make_it_so(api: Any, merchant: Any) -> None:
    body = {"amount": 100, "currency": "INR", "payment_method": {"type": "upi", "upi": {"vpa": "\u212aumar@upi"}}}
    r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "payment_method.upi.vpa"


async def test_the_simulator_takes_ascii_only(simulator_url: str) -> None:
    base = {"reference": "att_digits", "payment": "pay_digits", "amount": 100, "currency": "INR"}
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        r = await sim.post(
            "/v1/authorizations",
            json={**base, "card": {"number": fullwidth("4242424242424242"), "exp_month": 1, "exp_year": 2030}},
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "card.number"
        r = await sim.post(
            "/v1/authorizations", json={**base, "method": {"type": "upi", "upi": {"vpa": "\u212aumar@upi"}}}
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "method.upi.vpa"
