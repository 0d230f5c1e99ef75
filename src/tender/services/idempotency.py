"""Idempotency keys: a POST's effects and its stored answer commit in one transaction.

The key row is inserted first in the request's own transaction. A second request with the same key
blocks on that insert until the first commits, then replays its answer; if the first rolled back
(a 4xx, a crash), the second runs as if it were first. Nothing is ever applied twice. A request that
waits longer than the connection's `lock_timeout` (see `store.db`) for a still-running first one gets 409.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from psycopg import errors as pg_errors

from tender.errors import IdempotencyInProgress, IdempotencyMismatch, InvalidRequest
from tender.store import idempotency as store
from tender.store.db import Conn, Database
from tender.vault import Vault

MAX_KEY_LENGTH = 255


@dataclass(slots=True)
class StoredResponse:
    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


def request_fingerprint(method: str, path: str, payload: object) -> bytes:
    """Equal for the same request however its JSON is spaced or ordered."""
    canonical = orjson.dumps([method, path, payload], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).digest()


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
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", param="Idempotency-Key")
    async with db.transaction() as conn:
        if key is None:
            return await work(conn)
        try:
            reserved = await store.reserve(conn, merchant_id, key, fingerprint)
        except pg_errors.LockNotAvailable as exc:
            raise IdempotencyInProgress(
                "A request with this Idempotency-Key is still being processed; retry later."
            ) from exc
        if not reserved:
            replay = _replay(await store.find(conn, merchant_id, key), fingerprint)
            if seal is not None:
                replay.body = seal.decrypt(replay.body, row_id=_sealed_row(merchant_id, key)).encode()
            return replay
        response = await work(conn)
        body = response.body
        if seal is not None:
            body = seal.encrypt(body.decode(), row_id=_sealed_row(merchant_id, key))
        await store.save_response(conn, merchant_id, key, response.status_code, body, response.headers)
        return response


def _sealed_row(merchant_id: str, key: str) -> str:
    return f"idempotency:{merchant_id}:{key}"


def _replay(row: dict[str, object] | None, fingerprint: bytes) -> StoredResponse:
    if row is None or row["status_code"] is None:  # cannot outlive the first request's transaction
        raise IdempotencyInProgress("A request with this Idempotency-Key is still being processed.")
    if bytes(row["request_hash"]) != fingerprint:  # type: ignore[call-overload]
        raise IdempotencyMismatch(
            "This Idempotency-Key was already used with a different request; use a new key.",
            param="Idempotency-Key",
        )
    headers = row["response_headers"]
    return StoredResponse(
        status_code=int(row["status_code"]),  # type: ignore[call-overload]
        body=bytes(row["response_body"]),  # type: ignore[call-overload]
        headers=dict(headers) if isinstance(headers, dict) else {},
        replayed=True,
    )
