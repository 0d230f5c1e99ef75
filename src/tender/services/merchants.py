"""Merchants and their API keys: created by operators, keys shown once and kept only as hashes, rolled
with an optional overlap during which the old keys keep working."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from pydantic import BaseModel, ConfigDict, Field

from tender.domain.ids import MERCHANT, new_id
from tender.domain.models import Merchant
from tender.errors import InvalidRequest, NotFound
from tender.store import merchants as store
from tender.store import notifications
from tender.store.db import Conn, Database

log = logging.getLogger(__name__)

KEY_LISTENER_APPLICATION = "tender-api-keys"  # how the key cache's LISTEN connection shows in pg_stat_activity

SECRET_PREFIX = "sk_test_"  # noqa: S105 (a key prefix, not a secret)
PUBLISHABLE_PREFIX = "pk_test_"
# Operator requests keep their Idempotency-Key under this scope, as merchants' do under their id.
OPERATOR_SCOPE = "operator"
# How long old keys may keep working after a roll, at most: long enough to deploy new keys everywhere.
MAX_EXPIRE_OLD_IN = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class NewMerchant:
    merchant: Merchant
    secret_key: str
    publishable_key: str


@dataclass(frozen=True, slots=True)
class RolledKeys:
    merchant: Merchant
    secret_key: str
    publishable_key: str
    old_keys_expire_at: datetime  # when the keys that worked before the roll stop working


@dataclass(frozen=True, slots=True)
class Principal:
    merchant_id: str
    kind: str  # "secret" | "publishable"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _hint(key: str) -> str:
    return key[: key.index("_", 3) + 1] + "..." + key[-4:]


async def _new_keys(conn: Conn, merchant_id: str) -> tuple[str, str]:
    secret_key = SECRET_PREFIX + secrets.token_urlsafe(32)
    publishable_key = PUBLISHABLE_PREFIX + secrets.token_urlsafe(32)
    for key, kind in ((secret_key, "secret"), (publishable_key, "publishable")):
        await store.insert_api_key(conn, key_hash=hash_key(key), merchant_id=merchant_id, kind=kind, hint=_hint(key))
    return secret_key, publishable_key


MAX_NAME_LENGTH = 200


async def create_merchant_in(conn: Conn, name: object) -> NewMerchant:
    """In the caller's transaction (the admin route's, under its Idempotency-Key)."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"name: must be a non-empty string of at most {MAX_NAME_LENGTH} characters", param="name")
    merchant = Merchant(id=new_id(MERCHANT), name=name.strip(), created=datetime.now(UTC))
    await store.insert_merchant(conn, merchant)
    secret_key, publishable_key = await _new_keys(conn, merchant.id)
    return NewMerchant(merchant, secret_key, publishable_key)


async def create_merchant(db: Database, name: object) -> NewMerchant:
    async with db.transaction() as conn:
        return await create_merchant_in(conn, name)


class RollKeysRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    expire_old_in: int = Field(
        default=0,
        ge=0,
        le=MAX_EXPIRE_OLD_IN,
        description="Seconds the old keys keep working: 0 (the default) stops them at once; at most 7 days.",
    )


async def roll_keys_in(conn: Conn, merchant_id: str, expire_old_in: int) -> RolledKeys:
    """New secret and publishable keys; every key that works now stops working `expire_old_in` seconds from
    now (or sooner, if it was already due to). In the caller's transaction, which also tells every API
    process to forget the keys it cached (see Authenticator)."""
    merchant = await store.lock_merchant(conn, merchant_id)  # two rolls at once: one after the other
    if merchant is None:
        raise NotFound("No such merchant.", param="merchant")
    expires_at = await store.expire_live_keys(conn, merchant_id, timedelta(seconds=expire_old_in))
    secret_key, publishable_key = await _new_keys(conn, merchant_id)
    await store.announce_key_change(conn, merchant_id)
    return RolledKeys(merchant, secret_key, publishable_key, expires_at)


async def roll_keys(db: Database, merchant_id: str, expire_old_in: int) -> RolledKeys:
    async with db.transaction() as conn:
        return await roll_keys_in(conn, merchant_id, expire_old_in)


async def key_is_known(db: Database, key: str) -> bool:
    """Whether `key` is a live API key (`tender up` keeps showing the demo keys it saved while they work)."""
    async with db.connection() as conn:
        return await store.find_api_key(conn, hash_key(key)) is not None


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    until: float  # monotonic: the cache's own time limit
    expires_at: datetime | None  # the key's: a rolled key stops working then, cached or not


class Authenticator:
    """Resolves API keys to merchants, with an in-process cache: auth runs on every request.

    A cached key must not outlive a roll (`expire_old_in` 0 means at once, in every API process). So keys
    are cached only while this process LISTENs on the channel a roll notifies in its transaction
    (`api_keys`): a notification empties the cache, and so does the listener connecting, losing its
    connection or stopping. Without a listener (not started, or reconnecting) every request reads the
    database. A cached key also stops at its own `expires_at`. The roll's own process forgets at once;
    others when PostgreSQL delivers the notification, on commit (milliseconds).
    """

    def __init__(
        self,
        db: Database,
        *,
        listen_url: str | None = None,
        ttl_seconds: float = 30.0,
        max_entries: int = 10_000,
        ping_seconds: float = 10.0,
        backoff_max: float = 5.0,
    ) -> None:
        self._db = db
        self._listen_url = listen_url or db.url  # LISTEN goes to PostgreSQL itself, never through a pooler
        self._ttl = ttl_seconds
        self._max = max_entries
        self._ping_seconds = ping_seconds
        self._backoff_max = backoff_max
        self._cache: dict[bytes, _Cached] = {}
        self._generation = 0  # bumped by every forget(): a look-up that straddles one is not cached
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def authenticate(self, key: str) -> Principal | None:
        if not key.startswith((SECRET_PREFIX, PUBLISHABLE_PREFIX)) or len(key) > 200:
            return None
        digest = hash_key(key)
        hit = self._cache.get(digest)
        if (
            hit is not None
            and self._listening.is_set()
            and hit.until > time.monotonic()
            and (hit.expires_at is None or hit.expires_at > datetime.now(UTC))
        ):
            return hit.principal
        generation = self._generation
        async with self._db.connection() as conn:
            found = await store.find_api_key(conn, digest)
        if found is None:
            self._cache.pop(digest, None)
            return None
        principal = Principal(merchant_id=found.merchant_id, kind=found.kind)
        if self._listening.is_set() and generation == self._generation:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[digest] = _Cached(principal, time.monotonic() + self._ttl, found.expires_at)
        return principal

    def forget(self) -> None:
        """Drop every cached key (a roll happened, or the listener may have missed one)."""
        self._generation += 1
        self._cache.clear()

    @property
    def caching(self) -> bool:
        return self._listening.is_set()

    async def start(self, *, start_timeout: float = 10.0) -> None:
        """Start the listener (in the API's lifespan); returns once it listens, or after `start_timeout`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="api-key-listener")
        try:
            async with asyncio.timeout(start_timeout):
                await self._listening.wait()
        except TimeoutError:
            log.warning("API key listener: not listening yet; keys are read from the database on every request")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._stop_caching()

    def _stop_caching(self) -> None:
        self._listening.clear()
        self.forget()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                async with notifications.listening(
                    self._listen_url, store.KEYS_CHANNEL, application_name=KEY_LISTENER_APPLICATION
                ) as listener:
                    self.forget()  # whatever was rolled while nobody listened
                    self._listening.set()
                    delay = 0.1
                    async for _merchant_id in listener.payloads(self._ping_seconds):
                        self.forget()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("API key listener: connection lost (%s); reconnecting", type(exc).__name__)
            except Exception:  # never let a surprise end the listener (it would stay uncached, not wrong)
                log.exception("API key listener failed; reconnecting")
            finally:
                self._stop_caching()
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self._backoff_max)
