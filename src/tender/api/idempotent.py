"""One shape for every POST that changes something: the change and its stored answer commit together
under the request's `Idempotency-Key`, and a replay answers the first response byte for byte."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Response

from tender.bootstrap import Container
from tender.services import idempotency
from tender.services.idempotency import StoredResponse
from tender.services.objects import dumps
from tender.store.db import Conn


def to_response(stored: StoredResponse) -> Response:
    headers = dict(stored.headers)
    if stored.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(stored.body, status_code=stored.status_code, headers=headers, media_type="application/json")


async def post(
    container: Container,
    merchant_id: str,
    key: str | None,
    path: str,
    payload: Any,
    change: Callable[[Conn], Awaitable[dict[str, Any]]],
    *,
    status_code: int | Callable[[dict[str, Any]], int] = 200,
    headers: Callable[[dict[str, Any]], dict[str, str]] | None = None,
    sealed: bool = False,
) -> Response:
    """Run `change` (which returns the object to answer with) once per key. `sealed`: the stored answer
    shows a secret, so it is kept encrypted by the vault key."""

    async def work(conn: Conn) -> StoredResponse:
        obj = await change(conn)
        status = status_code(obj) if callable(status_code) else status_code
        return StoredResponse(status, dumps(obj), headers(obj) if headers else {})

    stored = await idempotency.run(
        container.db,
        merchant_id=merchant_id,
        key=key,
        fingerprint=idempotency.request_fingerprint(container.vault, merchant_id, "POST", path, payload),
        work=work,
        seal=container.vault if sealed else None,
    )
    return to_response(stored)
