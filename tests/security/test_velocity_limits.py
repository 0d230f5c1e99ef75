"""Issue 11, finding 6: "Add velocity limits against card testing ... per card fingerprint within a merchant;
on the hosted page, also per checkout session and per shopper's address; a sliding window; 429 with Retry-After".
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_network
from typing import Any

import httpx
import pytest

from tender.config import Settings
from tender.services import velocity
from tests.support.api import auth, card_payment
from tests.support.checkout import FORM, card_form, new_session, page_path
from tests.support.payments import authorizer, drain

pytestmark = pytest.mark.integration

DECLINED = "4000000000000002"  # card_declined / generic_decline
LOST = "4000000000009987"  # card_declined / lost_card
GOOD = "4242424242424242"
SHOPPER = "198.51.100.7"
OTHER_SHOPPER = "203.0.113.9"


@asynccontextmanager
async def page_client(container: Any, address: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on an API app with these settings, whose connections come from `address`."""
    from tender.api.app import create_app

    configured = dataclasses.replace(container, settings=container.settings.model_copy(update=settings))
    transport = httpx.ASGITransport(app=create_app(configured), client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tender.test") as client:
        yield client


async def payment_count(container: Any, merchant: Any) -> tuple[int, int]:
    """(payments, vault cards) of the merchant: a refused payment must add to neither."""
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM payments WHERE merchant_id = %(m)s) AS p,"
            " (SELECT count(*) FROM vault_cards WHERE merchant_id = %(m)s) AS c",
            {"m": merchant.merchant.id},
        )
        row = await cur.fetchone()
    return int(row["p"]), int(row["c"])


async def age_declines(container: Any, where: str, params: tuple[Any, ...], seconds: int) -> None:
    """Move declines back in time (the window slides over them)."""
    async with container.db.connection() as conn:
        await conn.execute(
            f"UPDATE payments SET updated = updated - make_interval(secs => %s) WHERE status = 'failed' AND {where}",
            (seconds, *params),
        )


async def declines_on_the_api(api: Any, container: Any, merchant: Any, number: str, n: int) -> None:
    for _ in range(n):
        r = await api.post("/v1/payments", json=card_payment(number), headers=auth(merchant.secret_key))
        assert r.status_code == 202, r.text
    await drain(authorizer(container))


def test_the_defaults_are_api_mds() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    limits = velocity.Limits.from_settings(s)
    assert (limits.window.total_seconds(), limits.per_card, limits.per_session, limits.per_address) == (
        3600,
        10,
        5,
        20,
    )
    assert s.trusted_proxies == ""  # X-Forwarded-For is not believed unless configured


async def test_ten_declines_of_a_card_then_429_with_retry_after_and_nothing_written(
    api: Any, container: Any, merchant: Any
) -> None:
    h = auth(merchant.secret_key)
    await declines_on_the_api(api, container, merchant, DECLINED, 10)
    before = await payment_count(container, merchant)
    assert before == (10, 10)

    r = await api.post("/v1/payments", json=card_payment(DECLINED), headers={**h, "Idempotency-Key": "after-10"})
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "too_many_declines")
    assert DECLINED not in r.text and DECLINED[-4:] not in error["message"]
    assert 3590 <= int(r.headers["retry-after"]) <= 3600  # when the oldest of the ten leaves the hour
    assert await payment_count(container, merchant) == before  # nothing written, nothing to charge

    # Another card of the same merchant, and the same card at another merchant, are not affected.
    other_card = await api.post("/v1/payments", json=card_payment(LOST), headers=h)
    assert other_card.status_code == 202, other_card.text
    from tender.services.merchants import create_merchant

    other = await create_merchant(container.db, "Other shop")
    elsewhere = await api.post("/v1/payments", json=card_payment(DECLINED), headers=auth(other.secret_key))
    assert elsewhere.status_code == 202, elsewhere.text

    # The window slides: Retry-After counts down with the oldest decline, which then no longer counts.
    m = merchant.merchant.id
    await age_declines(container, "merchant_id = %s", (m,), 3590)
    r = await api.post("/v1/payments", json=card_payment(DECLINED), headers={**h, "Idempotency-Key": "after-10"})
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 10, r.headers
    async with container.db.connection() as conn:
        await conn.execute(
            "UPDATE payments SET updated = updated - interval '11 s' WHERE id = (SELECT id FROM payments"
            " WHERE merchant_id = %s AND status = 'failed' ORDER BY updated LIMIT 1)",
            (m,),
        )
    # The same Idempotency-Key: a 429 was not stored as the key's answer.
    r = await api.post("/v1/payments", json=card_payment(DECLINED), headers={**h, "Idempotency-Key": "after-10"})
    assert r.status_code == 202, r.text
    assert "Idempotent-Replayed" not in r.headers


async def test_only_the_issuers_declines_count_not_processor_errors_or_successes(
    api: Any, container: Any, merchant: Any
) -> None:
    h = auth(merchant.secret_key)
    await declines_on_the_api(api, container, merchant, DECLINED, 10)
    async with container.db.connection() as conn:  # as if the processor had failed, not the card
        await conn.execute(
            "UPDATE payments SET failure_code = 'processing_error', decline_code = NULL WHERE merchant_id = %s",
            (merchant.merchant.id,),
        )
    assert (await api.post("/v1/payments", json=card_payment(DECLINED), headers=h)).status_code == 202
    for _ in range(11):  # successes of one card never add up to a limit
        assert (await api.post("/v1/payments", json=card_payment(GOOD), headers=h)).status_code == 202
    await drain(authorizer(container))
    assert (await api.post("/v1/payments", json=card_payment(GOOD), headers=h)).status_code == 202


async def pay_on_page(
    client: httpx.AsyncClient, session: dict[str, Any], number: str, **headers: str
) -> httpx.Response:
    return await client.post(page_path(session) + "/pay", content=card_form(number), headers={**FORM, **headers})


async def test_the_page_limits_declines_per_session(api: Any, container: Any, merchant: Any) -> None:
    session = await new_session(api, merchant, "ord-session")
    async with page_client(container, SHOPPER) as shopper:
        for _ in range(5):
            assert (await pay_on_page(shopper, session, DECLINED)).status_code == 303
            await drain(authorizer(container))
        before = await payment_count(container, merchant)
        r = await pay_on_page(shopper, session, LOST)  # another card: the session is what is limited
        assert r.status_code == 429
        assert 3590 <= int(r.headers["retry-after"]) <= 3600
        assert "Too many declined payments" in r.text and "60 minutes" in r.text and 'id="pay-form"' in r.text
        assert LOST not in r.text and r.headers["x-frame-options"] == "DENY"
        assert await payment_count(container, merchant) == before
        # The same shopper may pay in another session (the address allows 20).
        fresh = await new_session(api, merchant, "ord-session-2")
        assert (await pay_on_page(shopper, fresh, GOOD)).status_code == 303

        await age_declines(container, "checkout_session_id = %s", (session["id"],), 3601)
        assert (await pay_on_page(shopper, session, GOOD)).status_code == 303  # the window slid


async def test_the_page_limits_declines_per_address_and_stores_only_a_keyed_hash(
    api: Any, container: Any, merchant: Any
) -> None:
    limits = {"velocity_address_declines": 3, "velocity_session_declines": 2}  # configurable; small to be quick
    sessions = [await new_session(api, merchant, f"ord-addr-{i}") for i in range(5)]
    async with page_client(container, SHOPPER, **limits) as shopper:
        for session, n in ((sessions[0], 2), (sessions[1], 1)):
            for _ in range(n):
                assert (await pay_on_page(shopper, session, DECLINED)).status_code == 303
                await drain(authorizer(container))
        r = await pay_on_page(shopper, sessions[2], GOOD)  # a new session, three declines from this address
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 3500
        # Headers a client writes itself change nothing: X-Forwarded-For is not believed by default.
        r = await pay_on_page(shopper, sessions[2], GOOD, **{"X-Forwarded-For": OTHER_SHOPPER})
        assert r.status_code == 429

    async with page_client(container, OTHER_SHOPPER, **limits) as other:
        assert (await pay_on_page(other, sessions[3], GOOD)).status_code == 303
    # Behind a trusted proxy, the shopper is the address the proxy saw (the nearest untrusted hop), not the proxy.
    proxied = {**limits, "trusted_proxies": "198.51.100.0/24"}
    async with page_client(container, SHOPPER, **proxied) as proxy:
        r = await pay_on_page(proxy, sessions[4], GOOD, **{"X-Forwarded-For": f"{SHOPPER}, {OTHER_SHOPPER}"})
        assert r.status_code == 303
    async with page_client(container, SHOPPER, **limits) as shopper:
        await age_declines(container, "merchant_id = %s", (merchant.merchant.id,), 3601)
        assert (await pay_on_page(shopper, sessions[2], GOOD)).status_code == 303  # the window slid

    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT a.address_hash FROM checkout_client_addresses a JOIN payments p ON p.id = a.payment_id"
            " WHERE p.merchant_id = %s",
            (merchant.merchant.id,),
        )
        hashes = [bytes(row["address_hash"]) for row in await cur.fetchall()]
    assert len(hashes) == 3 + 1 + 1 + 1  # one per card payment made on the page
    assert all(len(h) == 32 for h in hashes)
    for address in (SHOPPER, OTHER_SHOPPER):
        unkeyed = {hashlib.sha256(v.encode()).digest() for v in (address, f"{merchant.merchant.id}\x00{address}")}
        assert not unkeyed & set(hashes) and address.encode() not in b"".join(hashes)
    assert len(set(hashes)) == 2  # the two shoppers


async def test_an_api_payment_is_never_limited_by_address(api: Any, container: Any, merchant: Any) -> None:
    """A merchant's server sends every shopper's payment from one address: many cards' declines from it
    block none of the others."""
    cards = ["4000000000000002", "4000000000009995", "4000000000009987", "4000000000000069", "4000000000000127"]
    for number in cards:
        await declines_on_the_api(api, container, merchant, number, 5)
    r = await api.post("/v1/payments", json=card_payment(GOOD), headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text


def test_the_shoppers_address_behind_proxies() -> None:
    trusted = (ip_network("10.0.0.0/8"),)
    assert velocity.client_address("203.0.113.9", ["1.2.3.4"], ()) == "203.0.113.9"  # off: the peer
    assert velocity.client_address("203.0.113.9", ["1.2.3.4"], trusted) == "203.0.113.9"  # peer not a proxy
    assert velocity.client_address("10.0.0.2", ["6.6.6.6, 1.2.3.4"], trusted) == "1.2.3.4"  # nearest hop
    assert velocity.client_address("10.0.0.2", ["6.6.6.6, 1.2.3.4, 10.0.0.1"], trusted) == "1.2.3.4"
    assert velocity.client_address("10.0.0.2", ["6.6.6.6", "1.2.3.4"], trusted) == "1.2.3.4"  # two headers
    assert velocity.client_address("10.0.0.2", [], trusted) == "10.0.0.2"
    assert velocity.client_address(None, [], ()) == "unknown"


def test_an_ipv6_shopper_is_counted_by_the_64_they_can_rotate_through() -> None:
    assert velocity.normalize_address("2001:db8:1:2::1") == velocity.normalize_address("2001:db8:1:2:ffff::9")
    assert velocity.normalize_address("2001:db8:1:2::1") != velocity.normalize_address("2001:db8:1:3::1")
    assert velocity.normalize_address("::ffff:198.51.100.7") == "198.51.100.7"
    assert velocity.normalize_address("198.51.100.7") != velocity.normalize_address("198.51.100.8")
