"""Finding 9: "A card number sent as `payment_method` is echoed back in the error message": no error message quotes
an input value, wherever the card number is put (a field, an id in the path, a query, a key, a form)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import auth, card_payment
from tests.support.checkout import FORM, new_session, page_path

pytestmark = pytest.mark.integration

PAN = "4000056655665556"


def assert_not_echoed(r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, r.text
    # Not the number, nor any 6 digits of it (a truncated echo is an echo too).
    for i in range(len(PAN) - 5):
        assert PAN[i : i + 6] not in r.text, (PAN[i : i + 6], r.text)


@pytest.mark.parametrize("sent", [PAN, "4000 0566 5566 5556", "4000-0566-5566-5556"])
async def test_a_card_number_as_payment_method_is_not_echoed(api: Any, merchant: Any, sent: str) -> None:
    r = await api.post(
        "/v1/payments", json={**card_payment(), "payment_method": sent}, headers=auth(merchant.secret_key)
    )
    assert_not_echoed(r)
    assert r.status_code == 400 and r.json()["error"]["param"] == "payment_method"
    # The digits with their separators are not echoed either.
    assert sent not in r.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/payments", card_payment(currency=PAN)),
        ("POST", "/v1/payments", card_payment(metadata={PAN: 1})),
        ("POST", "/v1/payments", card_payment(metadata={"ok": "x", PAN: "y" * 501})),
        ("POST", "/v1/payments", {**card_payment(), PAN: "1"}),
        ("POST", "/v1/payments", card_payment(payment_method={"type": PAN})),
        ("POST", "/v1/payments", card_payment(payment_method={"type": "card", "card": {"number": PAN, PAN: 1}})),
        ("GET", f"/v1/payments/{PAN}", None),
        ("POST", f"/v1/payments/{PAN}/capture", {}),
        ("POST", "/v1/payments/pay_x/cancel", {PAN: 1}),
        ("PUT", f"/v1/payments/{PAN}", None),
        ("GET", f"/v1/nothing/{PAN}", None),
        ("POST", "/v1/refunds", {"payment": PAN}),
        ("GET", f"/v1/refunds/{PAN}", None),
        ("GET", "/v1/events", {"type": PAN}),
        ("GET", "/v1/events", {"type": PAN + ".*"}),
        ("GET", f"/v1/events/{PAN}", None),
        ("POST", "/v1/events/evt_x/redeliver", {"endpoint": PAN}),
        ("POST", "/v1/webhook_endpoints", {"url": f"http://{PAN}/hooks", "events": ["*"]}),
        ("POST", "/v1/webhook_endpoints", {"url": "https://example.com/hooks", "events": [PAN]}),
        ("GET", f"/v1/webhook_endpoints/{PAN}", None),
        ("DELETE", f"/v1/webhook_endpoints/{PAN}", None),
        ("POST", "/v1/checkout/sessions", {"amount": 100, "currency": "BRL", "reference": "r", "success_url":
                                           "https://a.example/s", "cancel_url": "https://a.example/c",
                                           "payment_method_types": [PAN]}),
        ("GET", f"/v1/checkout/sessions/{PAN}", None),
        ("GET", f"/v1/payables/{PAN}", None),
        ("GET", f"/v1/settlements/{PAN}", None),
        ("GET", f"/v1/balance_transactions/{PAN}", None),
        ("POST", f"/webhooks/{PAN}", {}),
    ],
)  # fmt: skip
async def test_no_error_quotes_a_card_number_wherever_it_is_sent(
    api: Any, merchant: Any, method: str, path: str, body: dict[str, Any] | None
) -> None:
    headers = auth(merchant.secret_key)
    if method == "GET" and body:
        r = await api.get(path, params=body, headers=headers)
    else:
        r = await api.request(method, path, json=body, headers=headers)
    assert_not_echoed(r)


async def test_operator_routes_do_not_quote_a_card_number(api: Any, settings: Any) -> None:
    headers = auth(settings.admin_key.get_secret_value())
    for method, path in [
        ("GET", f"/admin/v1/merchants/{PAN}/fee_plan"),
        ("POST", f"/admin/v1/dead_letters/{PAN}/retry"),
    ]:
        assert_not_echoed(await api.request(method, path, headers=headers))


async def test_duplicate_references_do_not_quote_the_reference(api: Any, merchant: Any) -> None:
    h = auth(merchant.secret_key)
    assert (await api.post("/v1/payments", json=card_payment(reference=PAN), headers=h)).status_code == 202
    r = await api.post("/v1/payments", json=card_payment(reference=PAN), headers=h)
    assert r.status_code == 409 and r.json()["error"]["param"] == "reference"
    assert_not_echoed(r)
    await new_session(api, merchant, PAN)
    r = await api.post(
        "/v1/checkout/sessions",
        json={"amount": 999, "currency": "BRL", "reference": PAN, "success_url": "https://a.example/s",
              "cancel_url": "https://a.example/c"},
        headers=h,
    )  # fmt: skip
    assert r.status_code == 409
    assert_not_echoed(r)


async def test_the_hosted_page_does_not_quote_a_method_it_does_not_offer(api: Any, merchant: Any) -> None:
    session = await new_session(api, merchant, "echo-method")
    r = await api.post(page_path(session) + "/pay_method", content=f"type={PAN}", headers=FORM)
    assert_not_echoed(r)


async def test_the_simulator_does_not_quote_an_unknown_key(simulator_url: str) -> None:
    body = {"reference": "att_echo", "payment": "pay_echo", "amount": 100, "currency": "INR"}
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        r = await sim.post("/v1/authorizations", json={**body, "method": {"type": "wallet", PAN: 1}})
        assert_not_echoed(r)
        r = await sim.post("/v1/authorizations", json={**body, "method": {"type": "wallet", "wallet": {PAN: 1}}})
        assert_not_echoed(r)
