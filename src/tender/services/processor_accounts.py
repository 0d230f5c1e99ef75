"""A merchant's own account at a processor (issue 13 item 1): its credentials encrypted by the vault, bound to
the row, never shown again, and read back (`credentials`) only for that merchant and processor.

Stored and listed; not yet used for calls. Every call about a payment made with a merchant's account (its
authorization, capture, cancel, refunds, look-ups, and Stripe's events signed with its webhook secret) must use
that account, so the payment and refund pumps and POST /webhooks/stripe have to resolve it together: until
they do, Tender's own account (TENDER_STRIPE_SECRET_KEY) makes every Stripe call. Only Stripe has accounts.

The answer shows the account's id, processor, a hint (the secret key's last 4) and when it was created; a new
account for the same processor replaces the old one (a key rotated at Stripe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tender.domain.ids import PROCESSOR_ACCOUNT, new_id
from tender.errors import InvalidRequest, NotFound
from tender.services.objects import iso
from tender.store import merchants as merchant_store
from tender.store import processor_accounts as store
from tender.store.db import Conn, Database
from tender.store.processor_accounts import AccountRow
from tender.vault import Vault

PROCESSORS = ("stripe",)


class AccountCreate(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    processor: str = Field(max_length=32, description='"stripe"')
    secret_key: SecretStr = Field(max_length=255, description="The merchant's Stripe secret key (sk_... or rk_...).")
    webhook_secret: SecretStr | None = Field(default=None, max_length=255, description="Its whsec_... secret.")


@dataclass(frozen=True, slots=True)
class Credentials:
    secret_key: str
    webhook_secret: str | None

    def __repr__(self) -> str:  # never a secret in a log line or a traceback
        return f"Credentials(secret_key=...{self.secret_key[-4:]})"


def account_object(row: AccountRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "processor_account",
        "merchant": row.merchant_id,
        "processor": row.processor,
        "secret_key_hint": row.hint,
        "created": iso(row.created),
    }


def _check(request: AccountCreate) -> Credentials:
    if request.processor not in PROCESSORS:
        raise InvalidRequest(f"processor: must be one of {', '.join(PROCESSORS)}", param="processor")
    key = request.secret_key.get_secret_value()
    # Never echo the key: the message says what shape it should have, not what was sent.
    if not key.startswith(("sk_", "rk_")) or len(key) < 8 or not key.isascii() or not key.isprintable():
        raise InvalidRequest("secret_key: must be a Stripe secret key (sk_... or rk_...)", param="secret_key")
    hook = request.webhook_secret.get_secret_value() if request.webhook_secret is not None else None
    if hook is not None and (not hook.startswith("whsec_") or not hook.isascii() or not hook.isprintable()):
        raise InvalidRequest("webhook_secret: must be a Stripe webhook secret (whsec_...)", param="webhook_secret")
    return Credentials(key, hook)


async def create(conn: Conn, vault: Vault, merchant_id: str, request: AccountCreate) -> AccountRow:
    """In the caller's transaction (the idempotent POST's)."""
    credentials = _check(request)
    if await merchant_store.get_merchant(conn, merchant_id) is None:
        raise NotFound("No such merchant.", param="id")
    account_id = new_id(PROCESSOR_ACCOUNT)
    plain = orjson.dumps({"secret_key": credentials.secret_key, "webhook_secret": credentials.webhook_secret})
    return await store.upsert(
        conn,
        id=account_id,
        merchant_id=merchant_id,
        processor=request.processor,
        credentials_ct=vault.encrypt(plain.decode(), row_id=account_id),
        hint=credentials.secret_key[-4:],
    )


async def list_(db: Database, merchant_id: str) -> list[AccountRow]:
    async with db.connection() as conn:
        if await merchant_store.get_merchant(conn, merchant_id) is None:
            raise NotFound("No such merchant.", param="id")
        return await store.list_(conn, merchant_id)


async def credentials(conn: Conn, vault: Vault, merchant_id: str, processor: str) -> Credentials | None:
    """The merchant's own credentials at `processor`, decrypted for one call; None: Tender's own account."""
    row = await store.for_processor(conn, merchant_id, processor)
    if row is None:
        return None
    data = orjson.loads(vault.decrypt(bytes(row.credentials_ct), row_id=row.id))
    return Credentials(str(data["secret_key"]), data.get("webhook_secret"))
