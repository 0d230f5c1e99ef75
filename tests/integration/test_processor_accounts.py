"""A merchant's own processor account (issue 13 item 1): credentials encrypted by the vault (bound to the row)
and never shown again, listed without them, and read back only for that merchant and processor."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag

from tests.support.api import auth
from tests.support.money import admin

pytestmark = pytest.mark.integration

KEY = "sk_test_" + "merchant0wn" + "Secret4242"
HOOK = "whsec_" + "merchantHookSecret"


def _path(merchant_id: str) -> str:
    return f"/admin/v1/merchants/{merchant_id}/processor_accounts"


async def test_an_account_is_stored_encrypted_and_never_shown_again(
    api: Any, settings: Any, merchant: Any, container: Any
) -> None:
    r = await api.post(
        _path(merchant.merchant.id),
        json={"processor": "stripe", "secret_key": KEY, "webhook_secret": HOOK},
        headers=admin(settings),
    )
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["id"].startswith("pa_") and account["object"] == "processor_account"
    assert account["processor"] == "stripe" and account["secret_key_hint"] == "4242" and account["created"]
    assert KEY not in r.text and HOOK not in r.text
    listed = await api.get(_path(merchant.merchant.id), headers=admin(settings))
    assert listed.status_code == 200 and [a["id"] for a in listed.json()["data"]] == [account["id"]]
    assert KEY not in listed.text and HOOK not in listed.text
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT * FROM processor_accounts WHERE merchant_id = %s", (merchant.merchant.id,))
        rows = await cur.fetchall()
    stored = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in rows[0].values())
    assert KEY.encode() not in stored and HOOK.encode() not in stored
    # A new key (rotated at Stripe) replaces the account.
    again = await api.post(
        _path(merchant.merchant.id),
        json={"processor": "stripe", "secret_key": "sk_test_rotated9999"},
        headers=admin(settings),
    )
    assert again.status_code == 201
    listed = (await api.get(_path(merchant.merchant.id), headers=admin(settings))).json()["data"]
    assert [(a["id"], a["secret_key_hint"]) for a in listed] == [(again.json()["id"], "9999")]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"processor": "paypal", "secret_key": KEY}, "processor"),
        ({"processor": "stripe", "secret_key": "not-a-key-" + KEY[8:]}, "secret_key"),
        ({"processor": "stripe", "secret_key": KEY, "webhook_secret": "nope" + HOOK}, "webhook_secret"),
        ({"processor": "stripe"}, "secret_key"),
        ({"processor": "stripe", "secret_key": 42}, "secret_key"),
    ],
)
async def test_bad_accounts_are_a_400_naming_the_field_without_echoing_it(
    api: Any, settings: Any, merchant: Any, body: dict[str, Any], param: str
) -> None:
    r = await api.post(_path(merchant.merchant.id), json=body, headers=admin(settings))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert "merchant0wn" not in r.text and "merchantHook" not in r.text
    assert (await api.get(_path(merchant.merchant.id), headers=admin(settings))).json()["data"] == []


async def test_unknown_merchant_and_merchant_keys_are_refused(api: Any, settings: Any, merchant: Any) -> None:
    body = {"processor": "stripe", "secret_key": KEY}
    assert (await api.post(_path("mer_nope"), json=body, headers=admin(settings))).status_code == 404
    assert (await api.get(_path("mer_nope"), headers=admin(settings))).status_code == 404
    assert (await api.post(_path(merchant.merchant.id), json=body, headers=auth(merchant.secret_key))).status_code in (
        401,
        403,
    )


async def test_the_credentials_are_read_back_for_the_processor_and_only_for_that_merchant(
    api: Any, settings: Any, merchant: Any, container: Any
) -> None:
    """What the processor will be given for this merchant (services/processor_accounts.credentials): the key
    decrypted with the row's id; another merchant, or another processor, has none."""
    from tender.services import merchants, processor_accounts

    made = await api.post(
        _path(merchant.merchant.id),
        json={"processor": "stripe", "secret_key": KEY, "webhook_secret": HOOK},
        headers=admin(settings),
    )
    assert made.status_code == 201
    other = await merchants.create_merchant(container.db, "Other " + uuid.uuid4().hex[:6])
    async with container.db.connection() as conn:
        mine = await processor_accounts.credentials(conn, container.vault, merchant.merchant.id, "stripe")
        assert mine is not None and (mine.secret_key, mine.webhook_secret) == (KEY, HOOK)
        assert KEY not in repr(mine)
        assert await processor_accounts.credentials(conn, container.vault, other.merchant.id, "stripe") is None
        assert await processor_accounts.credentials(conn, container.vault, merchant.merchant.id, "simulator") is None
    # The ciphertext is bound to its row: copied into another row, it does not decrypt (then undone).
    with pytest.raises(_Undo):
        await _read_moved_row(container, merchant.merchant.id)


async def _read_moved_row(container: Any, merchant_id: str) -> None:
    from tender.services import processor_accounts

    async with container.db.transaction() as conn:
        await conn.execute("UPDATE processor_accounts SET id = 'pa_moved' WHERE merchant_id = %s", (merchant_id,))
        with pytest.raises(InvalidTag):
            await processor_accounts.credentials(conn, container.vault, merchant_id, "stripe")
        raise _Undo


class _Undo(Exception):
    """Rolls the test's tampering back."""
