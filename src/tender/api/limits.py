"""What any request may carry, checked once for every route before it runs (API, admin, hosted checkout,
processor notifications, static files).

- No NUL character in the path, a query parameter or a header: PostgreSQL cannot store one in text, and
  the failed statement would be a 500 (and its error context a copy of the value). 400 naming the query
  parameter, the header, or `path`. JSON bodies and forms are checked where they are parsed
  (`api.deps.json_body`, `web.pages`), so the error can name the field.
- A body of at most `max_body_bytes` (TENDER_MAX_BODY_BYTES, 1 MiB by default): a declared
  Content-Length over it is refused before anything is read; a chunked body is counted as it streams and
  refused as soon as it passes the limit, so no more than the limit is ever held in memory. 413
  `body_too_large`, param `body`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tender.domain.errors import is_shown_name
from tender.errors import PayloadTooLarge, TenderError
from tender.services.validation import NUL, nul_error

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(PayloadTooLarge):
    """Raised from `receive` inside whatever route is reading the body; answered 413 wherever it surfaces."""


def too_large(limit: int) -> PayloadTooLarge:
    return BodyTooLarge(f"body: the request body is larger than {limit} bytes", param="body")


def _nul_in_request(scope: Scope) -> TenderError | None:
    if NUL in scope["path"]:
        return nul_error("path")
    query = scope.get("query_string", b"").decode("latin-1")  # as Starlette decodes it
    if NUL in query or "%00" in query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if NUL in name or NUL in value:
                return nul_error(name if NUL not in name and is_shown_name(name) else "query")
    for raw_name, raw_value in scope["headers"]:
        if b"\x00" in raw_value or b"\x00" in raw_name:
            name = "-".join(w.capitalize() for w in raw_name.decode("latin-1").split("-"))  # Idempotency-Key
            return nul_error(name if is_shown_name(name) else "header")
    return None


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():  # bytes.isdigit is ASCII only; anything else is the server's to refuse
                return None
            return int(value) if len(value) <= 18 else 10**18  # int() refuses 4300+ digits
    return None


async def _answer(send: Send, error: TenderError) -> None:
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if error.status_code == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """Pure ASGI middleware (it must see `receive` itself to count a streamed body)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = _nul_in_request(scope)
        declared = _declared_length(scope)
        if refused is None and declared is not None and declared > self.max_body_bytes:
            refused = too_large(self.max_body_bytes)
        if refused is not None:
            await _answer(send, refused)
            return

        limit = self.max_body_bytes
        received = 0
        overflowed = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflowed = True
                    raise too_large(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflowed:
                # Whatever the route made of the exception (its own 400, a 500), the answer is the 413.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _answer(send, too_large(limit))
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await _answer(send, too_large(limit))
            return
        if overflowed and not started:
            await _answer(send, too_large(limit))
