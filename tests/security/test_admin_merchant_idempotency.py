"""Finding 8: "`POST /admin/v1/merchants` ignores `Idempotency-Key` (two merchants from one key)"."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tender.services.merchants import OPERATOR_SCOPE
from tests.support.api import auth

pytestmark = pytest.mark.integration


def admin(settings: Any, key: str | None = None) -> dict[str, str]:
    headers = auth(settings.admin_key.get_secret_value())
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def merchants_named(container: Any, name: str) -> list[str]:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT id FROM merchants WHERE name = %s", (name,))
        return [r["id"] for r in await cur.fetchall()]


async def test_a_replay_shows_the_same_merchant_and_keys_and_creates_nothing(
    api: Any, container: Any, settings: Any
) -> None:
    name, key = f"Idem shop {uuid.uuid4().hex[:8]}", f"k-{uuid.uuid4()}"
    first = await api.post("/admin/v1/merchants", json={"name": name}, headers=admin(settings, key))
    assert first.status_code == 201, first.text
    again = await api.post("/admin/v1/merchants", json={"name": name}, headers=admin(settings, key))
    assert again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()  # the keys shown once are shown again, to the one who asked
    assert await merchants_named(container, name) == [first.json()["id"]]
    assert (await api.get("/v1/payments", headers=auth(again.json()["secret_key"]))).status_code == 200

    # The stored answer holds the keys only encrypted (sealed by the vault key).
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT response_body FROM idempotency_keys WHERE merchant_id = %s AND key = %s", (OPERATOR_SCOPE, key)
        )
        row = await cur.fetchone()
    assert row is not None
    stored = bytes(row["response_body"])
    assert first.json()["secret_key"].encode() not in stored and name.encode() not in stored


async def test_the_same_key_with_another_body_is_422(api: Any, container: Any, settings: Any) -> None:
    key = f"k-{uuid.uuid4()}"
    name = f"Idem shop {uuid.uuid4().hex[:8]}"
    assert (await api.post("/admin/v1/merchants", json={"name": name}, headers=admin(settings, key))).status_code == 201
    other = await api.post("/admin/v1/merchants", json={"name": name + " 2"}, headers=admin(settings, key))
    assert other.status_code == 422 and other.json()["error"]["type"] == "idempotency_error"
    assert await merchants_named(container, name + " 2") == []


async def test_concurrent_requests_with_one_key_make_one_merchant(api: Any, container: Any, settings: Any) -> None:
    name, key = f"Race shop {uuid.uuid4().hex[:8]}", f"k-{uuid.uuid4()}"
    answers = await asyncio.gather(
        *(api.post("/admin/v1/merchants", json={"name": name}, headers=admin(settings, key)) for _ in range(5))
    )
    assert {r.status_code for r in answers} <= {201, 409}
    assert len({r.json()["id"] for r in answers if r.status_code == 201}) == 1
    assert len(await merchants_named(container, name)) == 1


async def test_a_refused_request_leaves_its_key_free(api: Any, container: Any, settings: Any) -> None:
    key = f"k-{uuid.uuid4()}"
    bad = await api.post("/admin/v1/merchants", json={"name": ""}, headers=admin(settings, key))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "name"
    name = f"Second try {uuid.uuid4().hex[:8]}"
    good = await api.post("/admin/v1/merchants", json={"name": name}, headers=admin(settings, key))
    assert good.status_code == 201 and await merchants_named(container, name) == [good.json()["id"]]


async def test_without_a_key_each_request_makes_a_merchant(api: Any, container: Any, settings: Any) -> None:
    name = f"No key shop {uuid.uuid4().hex[:8]}"
    for _ in range(2):
        assert (await api.post("/admin/v1/merchants", json={"name": name}, headers=admin(settings))).status_code == 201
    assert len(await merchants_named(container, name)) == 2
