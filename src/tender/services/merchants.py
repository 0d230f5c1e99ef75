"""Merchants and their API keys: created by operators, keys shown once and kept only as hashes."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from tender.domain.ids import MERCHANT, new_id
from tender.domain.models import Merchant
from tender.errors import InvalidRequest
from tender.store import merchants as store
from tender.store.db import Database

SECRET_PREFIX = "sk_test_"  # noqa: S105 (a key prefix, not a secret)
PUBLISHABLE_PREFIX = "pk_test_"


@dataclass(frozen=True, slots=True)
class NewMerchant:
    merchant: Merchant
    secret_key: str
    publishable_key: str


@dataclass(frozen=True, slots=True)
class Principal:
    merchant_id: str
    kind: str  # "secret" | "publishable"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _hint(key: str) -> str:
    return key[: key.index("_", 3) + 1] + "..." + key[-4:]


async def create_merchant(db: Database, name: object) -> NewMerchant:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidRequest("name: must be a non-empty string of at most 200 characters", param="name")
    merchant = Merchant(id=new_id(MERCHANT), name=name.strip(), created=datetime.now(UTC))
    secret_key = SECRET_PREFIX + secrets.token_urlsafe(32)
    publishable_key = PUBLISHABLE_PREFIX + secrets.token_urlsafe(32)
    async with db.transaction() as conn:
        await store.insert_merchant(conn, merchant)
        for key, kind in ((secret_key, "secret"), (publishable_key, "publishable")):
            await store.insert_api_key(
                conn, key_hash=hash_key(key), merchant_id=merchant.id, kind=kind, hint=_hint(key)
            )
    return NewMerchant(merchant, secret_key, publishable_key)


class Authenticator:
    """Resolves API keys to merchants, with a short in-process cache: auth runs on every request."""

    def __init__(self, db: Database, *, ttl_seconds: float = 30.0, max_entries: int = 10_000) -> None:
        self._db = db
        self._ttl = ttl_seconds
        self._max = max_entries
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    async def authenticate(self, key: str) -> Principal | None:
        if not key.startswith((SECRET_PREFIX, PUBLISHABLE_PREFIX)) or len(key) > 200:
            return None
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._db.connection() as conn:
            found = await store.find_api_key(conn, digest)
        if found is None:
            return None
        principal = Principal(merchant_id=found[0], kind=found[1])
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, principal)
        return principal
