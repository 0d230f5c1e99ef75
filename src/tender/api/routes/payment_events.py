"""GET /v1/payments/{id}/events: a payment's status as a Server-Sent Events stream.

    id: pay_XXXX.1
    event: payment.updated
    data: {"id": "pay_XXXX", "object": "payment", "status": "processing", ...}

One event at once, one more at every status change, and the stream ends after a final status
(succeeded, failed, canceled). A `: keep-alive` comment every 15 s keeps proxies from closing an idle
stream. Waiting costs no database connection: the process's PaymentStatusHub wakes the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable

import anyio
import psycopg
from fastapi import APIRouter, Response
from starlette.responses import StreamingResponse
from starlette.types import Send

from tender.api.deps import ContainerDep, HubDep, Merchant
from tender.domain.models import Payment
from tender.domain.payments import FINAL_STATUSES, PaymentStatus
from tender.services import payments
from tender.services.live import PaymentStatusHub
from tender.services.objects import dumps, payment_object
from tender.store.db import Database

log = logging.getLogger(__name__)

router = APIRouter(tags=["payments"])

KEEPALIVE_SECONDS = 15.0
EVENT_TYPE = "payment.updated"

_EXAMPLE = (
    "id: pay_01J0000000000000000000000.1\n"
    "event: payment.updated\n"
    'data: {"id":"pay_01J0000000000000000000000","object":"payment","status":"processing",...}\n\n'
    ": keep-alive\n\n"
    "id: pay_01J0000000000000000000000.2\n"
    "event: payment.updated\n"
    'data: {"id":"pay_01J0000000000000000000000","object":"payment","status":"succeeded",...}\n\n'
)


class EventStream(StreamingResponse):
    """A StreamingResponse that always closes its event generator, also when the client hangs up
    mid-send (Starlette cancels the sender then, which would leave the generator to the garbage collector)."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[bytes, None], headers: dict[str, str]) -> None:
        super().__init__(events, headers=headers)
        self._events = events

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()


def _event(payment: Payment, n: int) -> bytes:
    # orjson never emits a newline, so the object is one `data:` line.
    return b"id: %s.%d\nevent: %s\ndata: %s\n\n" % (
        payment.id.encode(),
        n,
        EVENT_TYPE.encode(),
        dumps(payment_object(payment)),
    )


async def _read(db: Database, merchant_id: str, payment_id: str) -> Payment:
    async with db.connection() as conn:
        return await payments.get_payment(conn, merchant_id, payment_id)


async def status_stream(
    db: Database,
    hub: PaymentStatusHub,
    merchant_id: str,
    payment_id: str,
    render: Callable[[Payment, int], bytes] = _event,
) -> AsyncGenerator[bytes, None]:
    """SSE bytes: `render(payment, n)` now and at every status change, until a final status."""
    loop = asyncio.get_running_loop()
    n = 0
    last_status: str | None = None
    async with hub.subscribe(payment_id) as sub:  # before each read: no change falls between read and wait
        last_write = loop.time()
        try:
            while True:
                payment = await _read(db, merchant_id, payment_id)
                if payment.status != last_status:
                    n += 1
                    last_status = payment.status
                    yield render(payment, n)
                    last_write = loop.time()
                    if PaymentStatus(payment.status) in FINAL_STATUSES:
                        return
                # Wait for a change, writing a keep-alive comment whenever the stream was quiet for 15 s;
                # re-read at least every `recheck_seconds` in case a notification was lost.
                recheck_at = loop.time() + hub.recheck_seconds
                while True:
                    now = loop.time()
                    if await sub.wait(min(recheck_at, last_write + KEEPALIVE_SECONDS) - now):
                        break
                    now = loop.time()
                    if now - last_write >= KEEPALIVE_SECONDS:
                        yield b": keep-alive\n\n"
                        last_write = now
                    if now >= recheck_at:
                        break
        except psycopg.Error as exc:  # the database went away mid-stream: end it; EventSource reconnects
            log.warning("payment event stream ended early: %s", type(exc).__name__)


@router.get(
    "/v1/payments/{payment_id}/events",
    status_code=200,
    summary="Stream a payment's status (Server-Sent Events)",
    response_class=EventStream,
    responses={
        200: {
            "description": (
                "A `text/event-stream`: one `payment.updated` event (`data`: the payment object on one line, "
                "`id`: `<payment id>.<n>`) at once, one more at every status change; the stream ends after a "
                "final status (`succeeded`, `failed`, `canceled`). A `: keep-alive` comment every 15 s. "
                "Browsers' EventSource reconnects when a stream ends: close it on a final status."
            ),
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _EXAMPLE}},
        },
        401: {"description": "Missing or invalid API key."},
        404: {"description": "No such payment (answered as JSON, before any stream starts)."},
    },
)
async def payment_events(payment_id: str, merchant: Merchant, container: ContainerDep, hub: HubDep) -> Response:
    # Unknown ids and other merchants' payments are a JSON 404 here, before the stream begins.
    await _read(container.db, merchant.merchant_id, payment_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventStream(status_stream(container.db, hub, merchant.merchant_id, payment_id), headers=headers)
