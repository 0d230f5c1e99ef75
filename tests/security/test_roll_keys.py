"""Finding 13: "API keys cannot be rolled or revoked: `POST /admin/v1/merchants/{id}/roll_keys` and
`tender merchant roll-keys` per API.md"."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tender.services.merchants import Authenticator, create_merchant, roll_keys
from tests.support.api import auth
from tests.support.processes import tender

pytestmark = pytest.mark.integration


def admin(settings: Any, key: str | None = None) -> dict[str, str]:
    headers = auth(settings.admin_key.get_secret_value())
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def works(api: Any, key: str) -> bool:
    """Whether the key is accepted: a secret key lists payments, a publishable one is at least known."""
    status = (await api.get("/v1/payments", headers=auth(key))).status_code
    assert status in (200, 401, 403), status
    return status != 401


async def test_roll_answers_new_keys_and_the_old_stop_at_once(api: Any, settings: Any, merchant: Any) -> None:
    mid = merchant.merchant.id
    assert await works(api, merchant.secret_key) and await works(api, merchant.publishable_key)
    r = await api.post(f"/admin/v1/merchants/{mid}/roll_keys", headers=admin(settings))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == mid and body["object"] == "merchant"
    assert body["secret_key"].startswith("sk_test_") and body["publishable_key"].startswith("pk_test_")
    assert body["secret_key"] != merchant.secret_key
    assert not await works(api, merchant.secret_key)
    assert not await works(api, merchant.publishable_key)
    assert await works(api, body["secret_key"]) and await works(api, body["publishable_key"])
    assert (await api.get("/v1/payments", headers=auth(body["publishable_key"]))).status_code == 403


async def test_old_keys_keep_working_for_expire_old_in_then_stop(api: Any, settings: Any, merchant: Any) -> None:
    mid = merchant.merchant.id
    before = datetime.now(UTC)
    r = await api.post(f"/admin/v1/merchants/{mid}/roll_keys", json={"expire_old_in": 2}, headers=admin(settings))
    assert r.status_code == 200, r.text
    expires = datetime.fromisoformat(r.json()["old_keys_expire_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=1) < expires < before + timedelta(seconds=4)
    assert await works(api, merchant.secret_key) and await works(api, r.json()["secret_key"])
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
    assert not await works(api, merchant.secret_key)
    assert await works(api, r.json()["secret_key"])


async def test_a_second_roll_never_extends_the_old_keys(api: Any, container: Any, settings: Any) -> None:
    m = await create_merchant(container.db, "Twice rolled")
    first = await roll_keys(container.db, m.merchant.id, 60)
    second = await roll_keys(container.db, m.merchant.id, 3600)
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, expires_at FROM api_keys WHERE merchant_id = %s ORDER BY created, kind", (m.merchant.id,)
        )
        rows = await cur.fetchall()
    original = [r["expires_at"] for r in rows[:2]]
    assert original == [first.old_keys_expire_at] * 2  # not pushed to an hour by the second roll
    assert [r["expires_at"] for r in rows[2:4]] == [second.old_keys_expire_at] * 2
    assert [r["expires_at"] for r in rows[4:]] == [None, None]


async def test_a_replayed_roll_shows_the_same_keys_and_rolls_once(
    api: Any, container: Any, settings: Any, merchant: Any
) -> None:
    mid, key = merchant.merchant.id, f"roll-{uuid.uuid4()}"
    first = await api.post(f"/admin/v1/merchants/{mid}/roll_keys", json={}, headers=admin(settings, key))
    again = await api.post(f"/admin/v1/merchants/{mid}/roll_keys", json={}, headers=admin(settings, key))
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    assert await works(api, first.json()["secret_key"])  # a second roll would have expired these at once
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM api_keys WHERE merchant_id = %s", (mid,))
        assert (await cur.fetchone())["n"] == 4  # type: ignore[index]
        cur = await conn.execute("SELECT response_body FROM idempotency_keys WHERE key = %s", (key,))
        stored = bytes((await cur.fetchone())["response_body"])  # type: ignore[index]
    assert first.json()["secret_key"].encode() not in stored  # sealed by the vault key


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"expire_old_in": -1}, "expire_old_in"),
        ({"expire_old_in": "60"}, "expire_old_in"),
        ({"expire_old_in": True}, "expire_old_in"),
        ({"expire_old_in": 1.5}, "expire_old_in"),
        ({"expire_old_in": 10**9}, "expire_old_in"),
        ({"expire_in": 60}, "expire_in"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_rolls_nothing(
    api: Any, settings: Any, merchant: Any, body: dict[str, Any], param: str
) -> None:
    r = await api.post(f"/admin/v1/merchants/{merchant.merchant.id}/roll_keys", json=body, headers=admin(settings))
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert await works(api, merchant.secret_key)


async def test_unknown_merchant_and_merchant_keys_are_refused(api: Any, settings: Any, merchant: Any) -> None:
    assert (await api.post("/admin/v1/merchants/mer_nope/roll_keys", headers=admin(settings))).status_code == 404
    own = await api.post(f"/admin/v1/merchants/{merchant.merchant.id}/roll_keys", headers=auth(merchant.secret_key))
    assert own.status_code == 401
    assert await works(api, merchant.secret_key)


async def test_a_roll_reaches_every_api_process_cache(container: Any) -> None:
    """Two authenticators with their own listeners stand for two API processes: both cache a key, and a roll
    made elsewhere (the CLI's process, here the test) empties both caches when it commits."""
    m = await create_merchant(container.db, "Cached shop")
    processes = [Authenticator(container.db), Authenticator(container.db)]
    for a in processes:
        await a.start()
    try:
        assert all(a.caching for a in processes)
        for a in processes:
            assert await a.authenticate(m.secret_key) is not None
        # Cached indeed: a change the listeners are not told of is not seen.
        async with container.db.connection() as conn:
            await conn.execute("UPDATE api_keys SET revoked = now() WHERE merchant_id = %s", (m.merchant.id,))
        try:
            for a in processes:
                assert await a.authenticate(m.secret_key) is not None
        finally:
            async with container.db.connection() as conn:
                await conn.execute("UPDATE api_keys SET revoked = NULL WHERE merchant_id = %s", (m.merchant.id,))

        rolled = await roll_keys(container.db, m.merchant.id, 0)
        deadline = time.monotonic() + 2.0  # a notification arrives in milliseconds; 2 s is a generous bound
        for a in processes:
            while await a.authenticate(m.secret_key) is not None:
                assert time.monotonic() < deadline, "a cached key outlived its roll"
                await asyncio.sleep(0.01)
            assert await a.authenticate(rolled.secret_key) is not None
    finally:
        for a in processes:
            await a.close()
    assert not any(a.caching for a in processes)


async def test_a_cached_key_stops_at_its_own_expiry(container: Any) -> None:
    m = await create_merchant(container.db, "Expiring shop")
    a = Authenticator(container.db)
    await a.start()
    try:
        await roll_keys(container.db, m.merchant.id, 1)
        await asyncio.sleep(0.2)  # the roll's notification has emptied the cache
        assert await a.authenticate(m.secret_key) is not None  # cached now, with its expiry
        await asyncio.sleep(1.0)
        assert await a.authenticate(m.secret_key) is None
    finally:
        await a.close()


async def test_tender_merchant_roll_keys(api: Any, container: Any, tender_env: dict[str, str]) -> None:
    m = await create_merchant(container.db, "CLI shop")
    done = await tender(tender_env, "merchant", "roll-keys", m.merchant.id, "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["id"] == m.merchant.id and body["secret_key"].startswith("sk_test_")
    assert not await works(api, m.secret_key) and await works(api, body["secret_key"])

    overlap = await tender(tender_env, "merchant", "roll-keys", m.merchant.id, "--expire-old-in", "600")
    assert overlap.returncode == 0, overlap.stderr
    assert "secret key:" in overlap.stdout and "old keys stop working at" in overlap.stdout
    assert await works(api, body["secret_key"])

    unknown = await tender(tender_env, "merchant", "roll-keys", "mer_nope")
    assert unknown.returncode == 1 and "No such merchant" in unknown.stderr
