"""/v1/payments: accept (202 + Location), retrieve and list payments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent, prefer
from tender.api.deps import (
    ContainerDep,
    HubDep,
    Merchant,
    PreferWait,
    StartingAfter,
    header_parameter,
    json_body,
    merchant_of,
    text_query,
)
from tender.api.idempotent import to_response
from tender.api.metrics import PAYMENTS_ACCEPTED
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, responses
from tender.api.prefer import PREFERENCE_APPLIED_HEADER
from tender.bootstrap import Container
from tender.domain.errors import DomainError
from tender.errors import (
    AmountTooLarge,
    DomainRuleViolated,
    DuplicateReference,
    InvalidJson,
    NoSuchObject,
    NotFound,
    ParameterUnknown,
    PaymentOperationInProgress,
    PaymentUnexpectedState,
    TenderError,
    TooManyDeclines,
)
from tender.services import idempotency, live, payments, velocity
from tender.services.idempotency import StoredResponse
from tender.services.live import PaymentStatusHub
from tender.services.objects import dumps, list_object, payment_object
from tender.services.payment_requests import CaptureIn, PaymentCreate
from tender.services.validation import param_name, parse
from tender.store.db import Conn

router = APIRouter(tags=["payments"], responses=responses(*MERCHANT_KEY))

# What capture and cancel answer besides the body's and the key's errors.
_OPERATION_ERRORS = (PaymentUnexpectedState, PaymentOperationInProgress, NotFound, *IDEMPOTENT)


@router.post(
    "/v1/payments",
    status_code=202,
    summary="Create a payment",
    responses={
        202: {
            "description": "Accepted; with `Prefer: wait`, the payment as it is after the wait.",
            "headers": {
                "Location": {"description": "/v1/payments/{id}", "schema": {"type": "string"}},
                **PREFERENCE_APPLIED_HEADER,
            },
        },
        **responses(*JSON_BODY, DomainRuleViolated, NoSuchObject, DuplicateReference, *IDEMPOTENT, TooManyDeclines),
    },
    openapi_extra={
        # Read by the handler itself, not declared as parameters: see api/deps.py `merchant_of`.
        "parameters": [
            header_parameter("Idempotency-Key"),
            header_parameter("Prefer", prefer.PREFER_DESCRIPTION),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PaymentCreate.model_json_schema()}},
        },
    },
)
async def create_payment(request: Request) -> Response:
    """Validates synchronously (400 naming `param`), stores the payment and answers 202 at once;
    a worker authorizes it in the background. Poll `Location` for the outcome, or send `Prefer: wait=N`
    to have the answer held until the payment leaves `processing` (at most N seconds): still 202 with
    `Location`, the body then being the payment as it is at the end of the wait."""
    # The hottest route resolves what other routes get as dependencies itself (api/deps.py `merchant_of`).
    merchant = await merchant_of(request)
    container: Container = request.app.state.container
    hub: PaymentStatusHub = request.app.state.hub
    wait = prefer.wait_seconds(request.headers.getlist("prefer"))
    idempotency_key = request.headers.get("idempotency-key")
    payload = await json_body(request)
    body = parse(PaymentCreate, payload)
    accepted: list[str] = []
    fingerprint = idempotency.request_fingerprint(
        container.vault, merchant.merchant_id, "POST", "/v1/payments", payload
    )
    batched = await _in_batch(container, merchant.merchant_id, body, idempotency_key, fingerprint)
    if batched is not None:
        stored, payment_id = batched
        accepted.append(payment_id)
    else:
        # One by one: what needs a look-up, and what the batch left out (it gets its exact answer here).
        # Declines per card within the merchant; never per address here (a merchant's server is a few addresses).
        guard = velocity.Guard(velocity.Limits.from_settings(container.settings))

        async def work(conn: Conn) -> StoredResponse:
            payment = await payments.create_payment(
                conn,
                container.vault,
                merchant.merchant_id,
                body,
                processor=container.default_processor,
                guard=guard,
                available=container.processors.keys(),
            )
            accepted.append(payment.id)
            return StoredResponse(202, dumps(payment_object(payment)), {"Location": f"/v1/payments/{payment.id}"})

        stored = await idempotency.run(
            container.db, merchant_id=merchant.merchant_id, key=idempotency_key, fingerprint=fingerprint, work=work
        )
    if not stored.replayed:
        PAYMENTS_ACCEPTED.inc()
    # An idempotent replay answers with the stored first response, status and body byte for byte, and
    # does not wait: what is replayed is the acceptance, and `GET Location` with `Prefer: wait` gives
    # the outcome. (A first answer that waited therefore differs from its replays, which show the
    # payment as accepted.) The wait starts only here, after `idempotency.run` has committed the payment.
    if wait is None or stored.replayed or not accepted:
        return to_response(stored)
    payment = await live.payment_when_decided(container.db, hub, merchant.merchant_id, accepted[-1], wait)
    headers = {**stored.headers, "Preference-Applied": f"wait={wait}"}
    return Response(dumps(payment_object(payment)), status_code=202, headers=headers, media_type="application/json")


async def _in_batch(
    container: Container, merchant_id: str, body: PaymentCreate, key: str | None, fingerprint: bytes
) -> tuple[StoredResponse, str] | None:
    """The answer and the payment's id from services/intake.py's batches, or None for the one-by-one path: a
    request needing a look-up, one the batch left out, or a keyed one the checks refuse (one by one, the key is
    read first: a replay answers even if the body would fail today, e.g. its card expired since)."""
    if not payments.needs_no_lookup(body):
        return None
    idempotency.check_key(key)
    try:
        new = payments.validate_new(
            merchant_id, body, processor=container.default_processor, available=container.processors.keys()
        )
    except (TenderError, DomainError):
        if key is not None:
            return None
        raise
    stored = await container.intake.accept(
        new, key=key, request_hash=fingerprint, available=container.processors.keys()
    )
    return (stored, new.id) if stored is not None else None


@router.get(
    "/v1/payments/{payment_id}",
    summary="Retrieve a payment",
    responses={
        200: {"description": "The payment.", "headers": PREFERENCE_APPLIED_HEADER},
        **responses(NotFound),
    },
)
async def get_payment(
    payment_id: str, merchant: Merchant, container: ContainerDep, hub: HubDep, wait: PreferWait
) -> Response:
    """With `Prefer: wait=N`, a `processing` payment is answered when its status changes or after N
    seconds, whichever comes first; no database connection is held meanwhile."""
    if wait is None:
        payment = await payments.get_payment(container.db, merchant.merchant_id, payment_id)
        return Response(dumps(payment_object(payment)), media_type="application/json")
    payment = await live.payment_when_decided(container.db, hub, merchant.merchant_id, payment_id, wait)
    return Response(
        dumps(payment_object(payment)), media_type="application/json", headers={"Preference-Applied": f"wait={wait}"}
    )


@router.get("/v1/payments", summary="List payments, newest first")
async def list_payments(
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
    status: Annotated[str | None, text_query("Only payments of this status", 32)] = None,
    reference: Annotated[str | None, text_query("Only the payment of this reference", 255)] = None,
) -> Response:
    rows, has_more = await payments.list_payments(
        container.db,
        merchant.merchant_id,
        limit=limit,
        starting_after=starting_after,
        status=status,
        reference=reference,
    )
    body = list_object([payment_object(p) for p in rows], has_more=has_more, url="/v1/payments")
    return Response(dumps(body), media_type="application/json")


async def _queue_operation(
    request: Request,
    container: Container,
    merchant_id: str,
    payment_id: str,
    operation: str,
    idempotency_key: str | None,
) -> Response:
    """Capture and cancel: queued for the worker in the request's transaction, answered 202 at once."""
    payload = await json_body(request)
    capture = parse(CaptureIn, payload) if operation == "capture" else None
    if operation == "cancel" and payload:
        param = param_name((next(iter(payload)),)) or "body"  # the key, if it looks like a name
        raise ParameterUnknown(f"Received unknown parameter: {param}", param=param)

    async def change(conn: Conn) -> dict[str, Any]:
        if capture is not None:
            payment = await payments.request_capture(conn, merchant_id, payment_id, capture)
        else:
            payment = await payments.request_cancel(conn, merchant_id, payment_id)
        return payment_object(payment)

    return await idempotent.post(
        container, merchant_id, idempotency_key, f"/v1/payments/{payment_id}/{operation}", payload, change,
        status_code=202, headers=lambda p: {"Location": f"/v1/payments/{p['id']}"},
    )  # fmt: skip


@router.post(
    "/v1/payments/{payment_id}/capture",
    status_code=202,
    summary="Capture an authorized payment (all, or a smaller amount)",
    responses=responses(*JSON_BODY, DomainRuleViolated, AmountTooLarge, *_OPERATION_ERRORS),
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": CaptureIn.model_json_schema()}}}},
)
async def capture_payment(
    payment_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Only from `requires_capture`. The worker captures through the processor; the payment becomes
    `succeeded` with `amount_captured` set. Poll `Location` (or wait) for the outcome."""
    return await _queue_operation(request, container, merchant.merchant_id, payment_id, "capture", idempotency_key)


@router.post(
    "/v1/payments/{payment_id}/cancel",
    status_code=202,
    summary="Cancel (void) an uncaptured payment",
    responses=responses(ParameterUnknown, InvalidJson, *_OPERATION_ERRORS),
)
async def cancel_payment(
    payment_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """From `requires_capture` or `requires_action`. The worker voids the authorization through the
    processor; the payment becomes `canceled`."""
    return await _queue_operation(request, container, merchant.merchant_id, payment_id, "cancel", idempotency_key)
