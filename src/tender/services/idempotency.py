"""Idempotency keys: a POST's effects and its stored answer commit in one transaction.

The key row is inserted first in the request's own transaction, under a transaction-scoped advisory
lock on the key. A second request with the same key while the first runs finds the lock taken and gets
409 at once (it neither waits nor holds a pooled connection); once the first has committed, the second
replays its answer; if the first rolled back (a 4xx, a crash), the second runs as if it were first.
Nothing is ever applied twice: the row's primary key stays the arbiter, the lock only spares the wait.

The stored fingerprint of a request is keyed and holds no card secret (see `request_fingerprint`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from psycopg import errors as pg_errors

from tender.errors import IdempotencyInProgress, IdempotencyMismatch, InvalidRequest
from tender.store import idempotency as store
from tender.store.db import Conn, Database
from tender.vault import Vault

MAX_KEY_LENGTH = 255
_IN_PROGRESS = "A request with this Idempotency-Key is still being processed; retry later."


@dataclass(slots=True)
class StoredResponse:
    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


def request_fingerprint(vault: Vault, merchant_id: str, method: str, path: str, payload: object) -> bytes:
    """Equal for the same request however its JSON is spaced or ordered, and telling nothing of it.

    An unkeyed hash of a body holding a card gave its number and CVC back to anyone who tried the few
    digits that the last4, the expiry and a guessed BIN leave open. So a card's number enters only as the
    vault's keyed fingerprint, its CVC not at all, and the whole is an HMAC under a key derived from the
    vault key: without that key, no guess at any part of a body can be checked against the row.

    A retry that differs only in its CVC is therefore a replay (the first answer again, nothing charged),
    not a 422: the CVC may not be kept in any form after authorization, not even to compare it with.
    """
    canonical = orjson.dumps(
        [merchant_id, method, path, _without_card_secrets(vault, merchant_id, payload)], option=orjson.OPT_SORT_KEYS
    )
    return vault.request_digest(canonical)


def _without_card_secrets(vault: Vault, merchant_id: str, value: object) -> object:
    """`value` with every card object's number replaced by its keyed fingerprint and its CVC left out."""
    if isinstance(value, list):
        return [_without_card_secrets(vault, merchant_id, item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, object] = {}
    for name, item in value.items():
        if name == "card" and isinstance(item, dict):
            item = {k: v for k, v in item.items() if k != "cvc"}
            if "number" in item:  # a non-string is refused by validation (nothing stored); any form will do
                item["number"] = vault.fingerprint(str(item["number"]), merchant_id=merchant_id)
        out[name] = _without_card_secrets(vault, merchant_id, item)
    return out


def check_key(key: str | None) -> None:
    """400 naming `Idempotency-Key` for a key that cannot be stored."""
    if key is not None and (not 0 < len(key) <= MAX_KEY_LENGTH or "\x00" in key):
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters, none of them NUL", param="Idempotency-Key"
        )


async def run(
    db: Database,
    *,
    merchant_id: str,
    key: str | None,
    fingerprint: bytes,
    work: Callable[[Conn], Awaitable[StoredResponse]],
    seal: Vault | None = None,
) -> StoredResponse:
    """Run `work` once per key. With `seal`, the stored answer is encrypted by the vault key: for answers
    that show a secret once (a webhook endpoint's signing secret), which a replay must show again."""
    check_key(key)
    if key is None:
        async with db.transaction() as conn:
            return await work(conn)
    # BEGIN travels with the key's reservation and COMMIT with the stored answer (issue 16: two round trips
    # fewer); an exception, a 409 or a replay leaves the transaction to be rolled back by own_transaction.
    async with db.own_transaction() as conn:
        try:
            free, reserved = await store.begin_and_reserve(conn, merchant_id, key, fingerprint)
        except pg_errors.LockNotAvailable as exc:  # a writer that took no lock (an older Tender mid-upgrade)
            raise IdempotencyInProgress(_IN_PROGRESS) from exc
        if not free:
            raise IdempotencyInProgress(_IN_PROGRESS)
        if not reserved:
            replay = _replay(await store.find(conn, merchant_id, key), fingerprint)
            if seal is not None:
                replay.body = seal.decrypt(replay.body, row_id=_sealed_row(merchant_id, key)).encode()
            return replay
        response = await work(conn)
        body = response.body
        if seal is not None:
            body = seal.encrypt(body.decode(), row_id=_sealed_row(merchant_id, key))
        await store.answer_and_commit(conn, merchant_id, key, response.status_code, body, response.headers)
        return response


def _sealed_row(merchant_id: str, key: str) -> str:
    return f"idempotency:{merchant_id}:{key}"


def _replay(row: store.StoredKey | None, fingerprint: bytes) -> StoredResponse:
    if row is None or row.status_code is None:  # cannot outlive the first request's transaction
        raise IdempotencyInProgress(_IN_PROGRESS)
    stored = row.request_hash
    # NULL: stored before migration 0006 erased the unkeyed hashes. It cannot be compared, so the key alone
    # decides and a replay replays (such rows are purged within TENDER_IDEMPOTENCY_KEY_HOURS of the upgrade).
    if stored is not None and not hmac.compare_digest(bytes(stored), fingerprint):
        raise IdempotencyMismatch(
            "This Idempotency-Key was already used with a different request; use a new key.",
            param="Idempotency-Key",
        )
    headers = row.response_headers
    assert row.response_body is not None  # written with the status code
    return StoredResponse(
        status_code=int(row.status_code),
        body=bytes(row.response_body),
        headers=dict(headers) if isinstance(headers, dict) else {},
        replayed=True,
    )
