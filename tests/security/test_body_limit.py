"""Finding 7 (body): "No request body limit (a 3 MB `customer` string was accepted, stored and echoed into every
event)": a body over TENDER_MAX_BODY_BYTES (1 MiB) is a 413 `body_too_large`, before it is read whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from tender.api.app import create_app
from tender.api.limits import RequestLimits
from tender.config import Settings
from tests.support.api import auth, card_payment
from tests.support.checkout import FORM, card_form, new_session, page_path
from tests.support.serve import serve

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def assert_413(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text[:300]
    error = r.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "body_too_large", "body")


async def payment_count(api: Any, merchant: Any) -> int:
    r = await api.get("/v1/payments", params={"limit": 100}, headers=auth(merchant.secret_key))
    return len(r.json()["data"])


async def test_the_reviewers_3_mb_customer_is_refused_and_nothing_is_stored(api: Any, merchant: Any) -> None:
    r = await api.post("/v1/payments", json=card_payment(customer="x" * 3_000_000), headers=auth(merchant.secret_key))
    assert_413(r)
    assert await payment_count(api, merchant) == 0


async def test_a_body_of_exactly_the_limit_is_read(api: Any, merchant: Any) -> None:
    body = orjson.dumps(card_payment())
    padded = body + b" " * (MIB - len(body))  # JSON allows trailing whitespace
    r = await api.post("/v1/payments", content=padded, headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    r = await api.post("/v1/payments", content=padded + b" ", headers=auth(merchant.secret_key))
    assert_413(r)


async def test_a_chunked_body_is_counted_as_it_streams(api: Any, merchant: Any) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent as it is made
        yield b'{"amount": 2500, "currency": "BRL", "customer": "'
        for _ in range(40):
            yield b"y" * 64 * 1024
        yield b'"}'

    r = await api.post("/v1/payments", content=chunks(), headers=auth(merchant.secret_key))
    assert "content-length" not in r.request.headers
    assert_413(r)
    assert await payment_count(api, merchant) == 0


async def test_the_hosted_pages_form_has_the_same_limit(api: Any, merchant: Any) -> None:
    session = await new_session(api, merchant, "body-limit")
    form = card_form() + "&holder_name=" + "z" * MIB
    r = await api.post(page_path(session) + "/pay", content=form, headers=FORM)
    assert_413(r)
    got = await api.get(f"/v1/checkout/sessions/{session['id']}", headers=auth(merchant.secret_key))
    assert got.json()["payment"] is None


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, as a route does, and answers its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def _scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": headers}


async def _call(app: Any, scope: Scope, receive: Receive) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read() -> None:
    async def receive() -> Message:
        raise AssertionError("the body was read")

    sent = await _call(RequestLimits(_echo, max_body_bytes=4096), _scope([(b"content-length", b"4097")]), receive)
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"])["error"]["code"] == "body_too_large"


async def test_an_absurd_declared_length_is_a_413_too() -> None:
    async def receive() -> Message:
        raise AssertionError("the body was read")

    sent = await _call(RequestLimits(_echo, max_body_bytes=4096), _scope([(b"content-length", b"9" * 5000)]), receive)
    assert sent[0]["status"] == 413


async def test_an_endless_chunked_body_is_cut_off_just_past_the_limit() -> None:
    pulled = 0

    async def receive() -> Message:  # 100 MiB would come, 64 KiB at a time
        nonlocal pulled
        pulled += 64 * 1024
        return {"type": "http.request", "body": b"a" * 64 * 1024, "more_body": pulled < 100 * MIB}

    sent = await _call(RequestLimits(_echo, max_body_bytes=MIB), _scope([]), receive)
    assert sent[0]["status"] == 413 and len(sent) == 2
    assert pulled <= MIB + 64 * 1024  # never more than one message past the limit


async def test_the_limit_comes_from_tender_max_body_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENDER_MAX_BODY_BYTES", raising=False)
    assert Settings().max_body_bytes == MIB
    monkeypatch.setenv("TENDER_MAX_BODY_BYTES", "4096")
    assert Settings().max_body_bytes == 4096


async def test_a_real_server_answers_413_to_a_chunked_upload(container: Any, merchant: Any) -> None:
    """Over a socket (uvicorn, as in production): chunked transfer encoding, no Content-Length."""
    async with serve(create_app(container)) as url:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(
            b"POST /v1/payments HTTP/1.1\r\nHost: tender.test\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {merchant.secret_key}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"{" + b" " * (64 * 1024 - 1)
        for _ in range(17):  # 1 MiB + 64 KiB
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            chunk = b" " * 64 * 1024
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
    assert status.startswith(b"HTTP/1.1 413"), status
    assert b"connection: close" in head.lower()
