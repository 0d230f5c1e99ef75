"""GET /v1/payments/{id}/events: a payment's status as a Server-Sent Events stream.

    id: pay_XXXX.1
    event: payment.updated
    data: {"id": "pay_XXXX", "object": "payment", "status": "processing", ...}

One event at once, one more at every status change, and the stream ends after a final status
(succeeded, failed, canceled). A `: keep-alive` comment every 15 s keeps proxies from closing an idle
stream. Waiting costs no database connection: the process's PaymentStatusHub wakes the stream
(the stream itself is tender.http.sse's, shared with the hosted page).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from tender.api.deps import ContainerDep, HubDep, Merchant
from tender.api.openapi import MERCHANT_KEY, responses
from tender.domain.models import Payment
from tender.errors import NotFound
from tender.http.sse import EventStream, status_stream
from tender.services import payments
from tender.services.objects import dumps, payment_object

router = APIRouter(tags=["payments"])

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


def _event(payment: Payment, n: int) -> bytes:
    # orjson never emits a newline, so the object is one `data:` line.
    return b"id: %s.%d\nevent: %s\ndata: %s\n\n" % (
        payment.id.encode(),
        n,
        EVENT_TYPE.encode(),
        dumps(payment_object(payment)),
    )


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
        **responses(*MERCHANT_KEY, NotFound),  # as JSON, before any stream starts
    },
)
async def payment_events(payment_id: str, merchant: Merchant, container: ContainerDep, hub: HubDep) -> Response:
    # Unknown ids and other merchants' payments are a JSON 404 here, before the stream begins.
    await payments.get_payment(container.db, merchant.merchant_id, payment_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    stream = status_stream(container.db, hub, merchant.merchant_id, payment_id, render=_event)
    return EventStream(stream, headers=headers)
