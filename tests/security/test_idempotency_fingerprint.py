"""Finding 1: "the card number and CVC can be recovered from `idempotency_keys.request_hash`" (unkeyed SHA-256)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from tender.domain.cards import luhn_valid
from tender.services.idempotency import request_fingerprint
from tender.vault import Vault
from tests.support.api import auth, card_payment
from tests.support.payments import authorizer, drain

pytestmark = pytest.mark.integration

PAN = "4242424242424242"


def keyed(merchant: Any, key: str) -> dict[str, str]:
    return {**auth(merchant.secret_key), "Idempotency-Key": key}


async def stored_row(container: Any, merchant_id: str, key: str) -> dict[str, Any]:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM idempotency_keys WHERE merchant_id = %s AND key = %s", (merchant_id, key)
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(row)


def unkeyed_hashes(body: dict[str, Any]) -> set[bytes]:
    """What a reader of the table could check a guess against if the hash were unkeyed: the old canonical
    form and the raw body as sent."""
    canonical = orjson.dumps(["POST", "/v1/payments", body], option=orjson.OPT_SORT_KEYS)
    return {hashlib.sha256(canonical).digest(), hashlib.sha256(orjson.dumps(body)).digest()}


def guesses(last4: str, bin6: str, unknown: int) -> Iterator[tuple[str, str]]:
    """The laptop attack on a 16-digit card with its BIN and last4 known, cut down to `unknown` middle
    digits so that it runs in a test: every Luhn-valid number times every 3-digit CVC."""
    known_middle = PAN[6 : 12 - unknown]
    for n in range(10**unknown):
        number = bin6 + known_middle + str(n).zfill(unknown) + last4
        if luhn_valid(number):
            for cvc in range(1000):
                yield number, str(cvc).zfill(3)


async def test_the_stored_fingerprint_gives_neither_number_nor_cvc_back(
    api: Any, container: Any, merchant: Any
) -> None:
    body = card_payment(PAN, reference=f"fp-{uuid.uuid4().hex[:8]}")
    body["payment_method"]["card"]["cvc"] = "739"
    r = await api.post("/v1/payments", json=body, headers=keyed(merchant, "fp-attack"))
    assert r.status_code == 202, r.text
    shown = r.json()["payment_method"]["card"]
    stored = bytes((await stored_row(container, merchant.merchant.id, "fp-attack"))["request_hash"])

    found = None
    for number, cvc in guesses(shown["last4"], PAN[:6], unknown=2):
        guess = card_payment(number, reference=body["reference"])
        guess["payment_method"]["card"]["cvc"] = cvc
        if stored in unkeyed_hashes(guess):
            found = (number, cvc)
            break
    assert found is None, "the stored request hash gave the card back"


async def test_no_table_holds_the_number_or_an_unkeyed_hash_of_the_body(
    api: Any, container: Any, merchant: Any
) -> None:
    """After a keyed payment, a payment on the hosted page, their authorization (attempts, events), a keyed
    capture and a sealed webhook endpoint creation, no row of any table holds the card number or an unkeyed
    hash of the request."""
    body = card_payment(PAN, capture=False, reference=f"scan-{uuid.uuid4().hex[:8]}")
    r = await api.post("/v1/payments", json=body, headers=keyed(merchant, "scan-pay"))
    assert r.status_code == 202, r.text
    session = await api.post(
        "/v1/checkout/sessions",
        json={
            "amount": 1200,
            "currency": "BRL",
            "reference": f"scan-cs-{uuid.uuid4().hex[:8]}",
            "success_url": "https://shop.example/thanks",
            "cancel_url": "https://shop.example/cart",
        },
        headers=keyed(merchant, "scan-cs"),
    )
    assert session.status_code == 201, session.text
    page = "/checkout/" + session.json()["id"]
    form = urlencode({"number": PAN, "expiry": "10/30", "cvc": "739", "holder_name": "Leia Organa"})
    paid = await api.post(page + "/pay", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert paid.status_code == 303, paid.text
    assert PAN not in (await api.get(page)).text
    await drain(authorizer(container))
    captured = await api.post(f"/v1/payments/{r.json()['id']}/capture", json={}, headers=keyed(merchant, "scan-cap"))
    assert captured.status_code == 202, captured.text
    endpoint = await api.post(
        "/v1/webhook_endpoints",
        json={"url": "https://example.com/hooks", "events": ["*"]},
        headers=keyed(merchant, "scan-we"),
    )
    assert endpoint.status_code == 201, endpoint.text
    await api.delete(f"/v1/webhook_endpoints/{endpoint.json()['id']}", headers=auth(merchant.secret_key))

    needles = [PAN, *(h.hex() for h in unkeyed_hashes(body))]
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        tables = [row["table_name"] for row in await cur.fetchall()]
        assert "idempotency_keys" in tables
        for table in tables:
            cur = await conn.execute(f'SELECT t::text AS row FROM "{table}" t')  # names from the catalog
            for row in await cur.fetchall():
                for needle in needles:
                    assert needle not in row["row"], f"{table} holds {needle[:6]}..."


async def test_a_replay_with_another_cvc_is_a_replay(api: Any, container: Any, merchant: Any) -> None:
    """The CVC is kept in no form, not even to compare it: a retry that differs only in its CVC gets the
    first answer (and charges nothing more)."""
    first = await api.post("/v1/payments", json=card_payment(PAN), headers=keyed(merchant, "cvc-retry"))
    retry_body = card_payment(PAN)
    retry_body["payment_method"]["card"]["cvc"] = "999"
    again = await api.post("/v1/payments", json=retry_body, headers=keyed(merchant, "cvc-retry"))
    assert first.status_code == again.status_code == 202, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_another_card_or_other_details_are_still_a_mismatch(api: Any, merchant: Any) -> None:
    assert (
        await api.post("/v1/payments", json=card_payment(PAN), headers=keyed(merchant, "fp-422"))
    ).status_code == 202
    for other in (
        card_payment("5555555555554444"),
        card_payment(PAN, amount=2501),
        {**card_payment(PAN), "metadata": {"order": "2"}},
    ):
        r = await api.post("/v1/payments", json=other, headers=keyed(merchant, "fp-422"))
        assert r.status_code == 422, r.text
        assert r.json()["error"]["type"] == "idempotency_error"


def test_the_fingerprint_is_keyed_and_ignores_the_cvc_and_json_layout() -> None:
    vault = Vault(os.urandom(32))
    body = card_payment(PAN)
    fingerprint = request_fingerprint(vault, "mer_a", "POST", "/v1/payments", body)
    reordered = orjson.loads(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    assert request_fingerprint(vault, "mer_a", "POST", "/v1/payments", reordered) == fingerprint
    other_cvc = card_payment(PAN)
    other_cvc["payment_method"]["card"]["cvc"] = "456"
    assert request_fingerprint(vault, "mer_a", "POST", "/v1/payments", other_cvc) == fingerprint
    without_cvc = card_payment(PAN)
    del without_cvc["payment_method"]["card"]["cvc"]
    assert request_fingerprint(vault, "mer_a", "POST", "/v1/payments", without_cvc) == fingerprint
    # Without the vault key the fingerprint cannot be recomputed, so no guess can be checked against it.
    assert request_fingerprint(Vault(os.urandom(32)), "mer_a", "POST", "/v1/payments", body) != fingerprint
    assert fingerprint not in unkeyed_hashes(body)
    assert request_fingerprint(vault, "mer_a", "POST", "/v1/payments", card_payment("5555555555554444")) != fingerprint
    assert request_fingerprint(vault, "mer_b", "POST", "/v1/payments", body) != fingerprint


async def test_a_key_stored_before_the_fix_replays(api: Any, container: Any, merchant: Any) -> None:
    """Migration 0006 erased the unkeyed hashes: such a row cannot be compared, so the key alone decides."""
    first = await api.post("/v1/payments", json=card_payment(PAN), headers=keyed(merchant, "pre-0006"))
    assert first.status_code == 202
    async with container.db.connection() as conn:
        await conn.execute(
            "UPDATE idempotency_keys SET request_hash = NULL WHERE merchant_id = %s AND key = 'pre-0006'",
            (merchant.merchant.id,),
        )
    again = await api.post("/v1/payments", json=card_payment(PAN, amount=7), headers=keyed(merchant, "pre-0006"))
    assert again.status_code == 202, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


def test_migration_0006_erases_the_unkeyed_hashes(pg_server_url: str) -> None:
    import psycopg

    from tender.store import migrate
    from tests.support.databases import fresh_database

    with fresh_database(pg_server_url, "tender_mig", revision="0005") as url:
        body = card_payment(PAN)
        old_hash = next(iter(unkeyed_hashes(body)))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO merchants (id, name) VALUES ('mer_old', 'Old')")
            conn.execute(
                "INSERT INTO idempotency_keys (merchant_id, key, request_hash, status_code, response_body)"
                " VALUES ('mer_old', 'k', %s, 202, '{}'), ('mer_old', 'running', %s, NULL, NULL)",
                (old_hash, old_hash),
            )
        migrate.upgrade(url, "0006")
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT key, request_hash, status_code, response_body FROM idempotency_keys ORDER BY key"
            ).fetchall()
    assert rows == [("k", None, 202, b"{}"), ("running", None, None, None)]
