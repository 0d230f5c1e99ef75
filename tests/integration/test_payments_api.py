"""The payments API against real PostgreSQL: acceptance, validation, idempotency, auth and isolation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.api import auth, card_payment

pytestmark = pytest.mark.integration


async def count_payments(container: Any, merchant_id: str) -> int:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM payments WHERE merchant_id = %s", (merchant_id,))
        row = await cur.fetchone()
    return int(row["n"])


async def test_accepts_with_202_location_and_no_card_data(api: Any, merchant: Any) -> None:
    r = await api.post("/v1/payments", json=card_payment(), headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/payments/{body['id']}"
    assert body["id"].startswith("pay_")
    assert body["object"] == "payment"
    assert body["status"] == "processing"
    assert (body["amount"], body["currency"], body["capture"]) == (2500, "BRL", True)
    card = body["payment_method"]["card"]
    assert (card["brand"], card["last4"], card["funding"]) == ("visa", "4242", "credit")
    assert len(card["fingerprint"]) >= 16
    assert "4242424242424242" not in r.text and '"123"' not in r.text and "cvc" not in r.text


async def test_body_without_json_content_type_is_accepted(api: Any, merchant: Any) -> None:
    """`curl -d` sends application/x-www-form-urlencoded; the body is still JSON."""
    import orjson

    r = await api.post(
        "/v1/payments",
        content=orjson.dumps(card_payment()),
        headers={**auth(merchant.secret_key), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 202, r.text


def _with_card(**card: Any) -> dict[str, Any]:
    body = card_payment()
    body["payment_method"]["card"].update(card)
    return body


BAD_REQUESTS: list[tuple[str, Any, str]] = [
    ("missing amount", {k: v for k, v in card_payment().items() if k != "amount"}, "amount"),
    ("float amount", card_payment(amount=25.5), "amount"),
    ("string amount", card_payment(amount="2500"), "amount"),
    ("zero amount", card_payment(amount=0), "amount"),
    ("negative amount", card_payment(amount=-1), "amount"),
    ("huge amount", card_payment(amount=10**15), "amount"),
    ("unknown currency", card_payment(currency="XYZ"), "currency"),
    ("currency not a string", card_payment(currency=986), "currency"),
    ("luhn", _with_card(number="4242424242424241"), "payment_method.card.number"),
    ("short number", _with_card(number="4242"), "payment_method.card.number"),
    ("letters in number", _with_card(number="4242abcd42424242"), "payment_method.card.number"),
    ("expired", _with_card(exp_year=2020), "payment_method.card.exp_year"),
    ("month 13", _with_card(exp_month=13), "payment_method.card.exp_month"),
    ("cvc 2 digits", _with_card(cvc="12"), "payment_method.card.cvc"),
    ("cvc as number", _with_card(cvc=123), "payment_method.card.cvc"),
    (
        "missing cvc",
        {
            **card_payment(),
            "payment_method": {
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": 10, "exp_year": 2030},
            },
        },
        "payment_method.card.cvc",
    ),
    ("unknown method type", card_payment(payment_method={"type": "cash"}), "payment_method.type"),
    ("unknown saved method", card_payment(payment_method="pm_nope"), "payment_method"),
    ("unknown parameter", card_payment(colour="blue"), "colour"),
    ("metadata value not a string", card_payment(metadata={"order": 1}), "metadata.order"),
    ("too many metadata keys", card_payment(metadata={f"k{i}": "v" for i in range(51)}), "metadata"),
    ("capture not a bool", card_payment(capture="yes"), "capture"),
    ("bad return_url", card_payment(return_url="javascript:alert(1)"), "return_url"),
]


@pytest.mark.parametrize(("case", "body", "param"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
async def test_bad_input_is_400_naming_the_field_and_writes_nothing(
    api: Any, container: Any, merchant: Any, case: str, body: Any, param: str
) -> None:
    r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param.split(".")[-1] in error["message"] or param in error["message"]
    assert "4242424242424241" not in r.text and "Traceback" not in r.text
    assert await count_payments(container, merchant.merchant.id) == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"amount=100&currency=BRL"])
async def test_malformed_body_is_400(api: Any, merchant: Any, raw: bytes) -> None:
    r = await api.post("/v1/payments", content=raw, headers=auth(merchant.secret_key))
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "body"


async def test_lowercase_currency_and_zero_decimal_currency(api: Any, merchant: Any) -> None:
    r = await api.post("/v1/payments", json=card_payment(currency="jpy", amount=500), headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    assert r.json()["currency"] == "JPY"


async def test_duplicate_reference_is_409_naming_the_payment(api: Any, merchant: Any) -> None:
    first = await api.post("/v1/payments", json=card_payment(reference="order-1"), headers=auth(merchant.secret_key))
    assert first.status_code == 202
    second = await api.post("/v1/payments", json=card_payment(reference="order-1"), headers=auth(merchant.secret_key))
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "duplicate_reference"
    assert error["payment"] == first.json()["id"]
    assert first.json()["id"] in error["message"]


async def test_same_reference_is_fine_for_another_merchant(api: Any, container: Any, merchant: Any) -> None:
    from tender.services.merchants import create_merchant

    other = await create_merchant(container.db, "Other shop")
    for m in (merchant, other):
        r = await api.post("/v1/payments", json=card_payment(reference="shared"), headers=auth(m.secret_key))
        assert r.status_code == 202


async def test_idempotent_replay_returns_the_first_answer(api: Any, container: Any, merchant: Any) -> None:
    headers = {**auth(merchant.secret_key), "Idempotency-Key": "key-1"}
    first = await api.post("/v1/payments", json=card_payment(), headers=headers)
    again = await api.post("/v1/payments", json=card_payment(), headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert await count_payments(container, merchant.merchant.id) == 1


async def test_idempotency_key_with_a_different_body_is_422(api: Any, container: Any, merchant: Any) -> None:
    headers = {**auth(merchant.secret_key), "Idempotency-Key": "key-2"}
    assert (await api.post("/v1/payments", json=card_payment(), headers=headers)).status_code == 202
    r = await api.post("/v1/payments", json=card_payment(amount=9999), headers=headers)
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "idempotency_error"
    assert await count_payments(container, merchant.merchant.id) == 1


async def test_idempotency_keys_are_per_merchant(api: Any, container: Any, merchant: Any) -> None:
    from tender.services.merchants import create_merchant

    other = await create_merchant(container.db, "Other")
    for m in (merchant, other):
        r = await api.post(
            "/v1/payments", json=card_payment(), headers={**auth(m.secret_key), "Idempotency-Key": "same"}
        )
        assert r.status_code == 202
        assert "idempotent-replayed" not in r.headers


async def test_a_failed_request_does_not_burn_its_idempotency_key(api: Any, merchant: Any) -> None:
    headers = {**auth(merchant.secret_key), "Idempotency-Key": "key-3"}
    bad = await api.post("/v1/payments", json=_with_card(number="4242424242424241"), headers=headers)
    assert bad.status_code == 400
    good = await api.post("/v1/payments", json=_with_card(number="4242424242424241"), headers=headers)
    assert good.status_code == 400  # same request, same answer; nothing was stored


async def test_concurrent_requests_with_one_key_make_one_payment(api: Any, container: Any, merchant: Any) -> None:
    headers = {**auth(merchant.secret_key), "Idempotency-Key": "race"}
    body = card_payment(reference="race-order")
    responses = await asyncio.gather(*(api.post("/v1/payments", json=body, headers=headers) for _ in range(12)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {202, 409}, codes
    ok = [r for r in responses if r.status_code == 202]
    assert len({r.json()["id"] for r in ok}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in ok) == 1
    assert await count_payments(container, merchant.merchant.id) == 1


async def test_concurrent_duplicate_references_make_one_payment(api: Any, container: Any, merchant: Any) -> None:
    body = card_payment(reference="dup-race")
    responses = await asyncio.gather(
        *(api.post("/v1/payments", json=body, headers=auth(merchant.secret_key)) for _ in range(8))
    )
    assert sorted(r.status_code for r in responses) == [202] + [409] * 7
    assert await count_payments(container, merchant.merchant.id) == 1


async def test_authentication(api: Any, merchant: Any) -> None:
    missing = await api.get("/v1/payments")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    wrong = await api.get("/v1/payments", headers=auth("sk_test_" + "x" * 43))
    assert wrong.status_code == 401
    publishable = await api.get("/v1/payments", headers=auth(merchant.publishable_key))
    assert publishable.status_code == 403
    assert publishable.json()["error"]["type"] == "permission_error"


async def test_another_merchants_payment_is_404(api: Any, container: Any, merchant: Any) -> None:
    from tender.services.merchants import create_merchant

    other = await create_merchant(container.db, "Nosy shop")
    created = (await api.post("/v1/payments", json=card_payment(), headers=auth(merchant.secret_key))).json()
    mine = await api.get(f"/v1/payments/{created['id']}", headers=auth(merchant.secret_key))
    assert mine.status_code == 200
    theirs = await api.get(f"/v1/payments/{created['id']}", headers=auth(other.secret_key))
    assert theirs.status_code == 404
    assert theirs.json()["error"]["type"] == "not_found"
    listed = (await api.get("/v1/payments", headers=auth(other.secret_key))).json()
    assert created["id"] not in {p["id"] for p in listed["data"]}


async def test_list_is_newest_first_with_cursor_and_filters(api: Any, merchant: Any) -> None:
    ids = []
    for i in range(5):
        r = await api.post("/v1/payments", json=card_payment(reference=f"o-{i}"), headers=auth(merchant.secret_key))
        ids.append(r.json()["id"])
    page1 = (await api.get("/v1/payments?limit=2", headers=auth(merchant.secret_key))).json()
    assert page1["object"] == "list" and page1["has_more"] is True
    assert [p["id"] for p in page1["data"]] == ids[::-1][:2]
    page2 = (await api.get(f"/v1/payments?limit=2&starting_after={ids[3]}", headers=auth(merchant.secret_key))).json()
    assert [p["id"] for p in page2["data"]] == [ids[2], ids[1]]
    last = (await api.get(f"/v1/payments?limit=10&starting_after={ids[1]}", headers=auth(merchant.secret_key))).json()
    assert [p["id"] for p in last["data"]] == [ids[0]] and last["has_more"] is False
    by_ref = (await api.get("/v1/payments?reference=o-3", headers=auth(merchant.secret_key))).json()
    assert [p["id"] for p in by_ref["data"]] == [ids[3]]
    processing = (await api.get("/v1/payments?status=processing", headers=auth(merchant.secret_key))).json()
    assert len(processing["data"]) == 5


@pytest.mark.parametrize(
    ("query", "param"), [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("status=done", "status")]
)
async def test_bad_list_parameters_are_400(api: Any, merchant: Any, query: str, param: str) -> None:
    r = await api.get(f"/v1/payments?{query}", headers=auth(merchant.secret_key))
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


async def test_unknown_route_is_a_json_404(api: Any) -> None:
    r = await api.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found"


async def test_admin_creates_merchants_with_keys_shown_once(api: Any, container: Any) -> None:
    admin = auth(container.settings.admin_key.get_secret_value())
    r = await api.post("/admin/v1/merchants", json={"name": "Acme"}, headers=admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["object"] == "merchant" and body["id"].startswith("mer_") and body["name"] == "Acme"
    assert body["secret_key"].startswith("sk_test_") and body["publishable_key"].startswith("pk_test_")
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT key_hash, hint FROM api_keys WHERE merchant_id = %s", (body["id"],))
        rows = await cur.fetchall()
    assert len(rows) == 2
    for row in rows:  # only hashes and a short hint are stored
        assert body["secret_key"].encode() not in bytes(row["key_hash"])
        assert body["secret_key"] not in row["hint"] and body["publishable_key"] not in row["hint"]
    paid = await api.post("/v1/payments", json=card_payment(), headers=auth(body["secret_key"]))
    assert paid.status_code == 202
    assert (await api.post("/admin/v1/merchants", json={"name": "x"}, headers=auth("nope"))).status_code == 401
    assert (await api.post("/admin/v1/merchants", json={"name": ""}, headers=admin)).json()["error"]["param"] == "name"


async def test_idempotency_keys_are_kept_two_days_then_purged(api: Any, container: Any, merchant: Any) -> None:
    from tender.services.maintenance import purge_idempotency_keys

    for key in ("old-key", "recent-key"):
        r = await api.post(
            "/v1/payments", json=card_payment(), headers={**auth(merchant.secret_key), "Idempotency-Key": key}
        )
        assert r.status_code == 202
    async with container.db.connection() as conn:
        await conn.execute(
            "UPDATE idempotency_keys SET created = now() - interval '49 hours'"
            " WHERE merchant_id = %s AND key = 'old-key'",
            (merchant.merchant.id,),
        )
    assert await purge_idempotency_keys(container.db, hours=container.settings.idempotency_key_hours) >= 1
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT key FROM idempotency_keys WHERE merchant_id = %s", (merchant.merchant.id,))
        assert [r["key"] for r in await cur.fetchall()] == ["recent-key"]
