"""A payment's status as Server-Sent Events, for the API's /v1/payments/{id}/events and the hosted page.

One event at once, one more at every status change, and the stream ends after a final status
(succeeded, failed, canceled). A `: keep-alive` comment every 15 s keeps proxies from closing an idle
stream. Waiting costs no database connection: the process's PaymentStatusHub wakes the stream. Each
caller renders the events its own way (the API: the payment object; the page: its status only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable

import anyio
import psycopg
from starlette.responses import StreamingResponse
from starlette.types import Send

from tender.domain.models import Payment
from tender.domain.payments import FINAL_STATUSES, PaymentStatus
from tender.services import payments
from tender.services.live import PaymentStatusHub
from tender.store.db import Database

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0


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


async def status_stream(
    db: Database,
    hub: PaymentStatusHub,
    merchant_id: str,
    payment_id: str,
    render: Callable[[Payment, int], bytes],
) -> AsyncGenerator[bytes, None]:
    """SSE bytes: `render(payment, n)` now and at every status change, until a final status."""
    loop = asyncio.get_running_loop()
    n = 0
    last_status: str | None = None
    async with hub.subscribe(payment_id) as sub:  # before each read: no change falls between read and wait
        last_write = loop.time()
        try:
            while True:
                payment = await payments.get_payment(db, merchant_id, payment_id)
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
