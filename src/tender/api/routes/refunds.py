"""/v1/refunds: accept (202 + Location), retrieve and list refunds."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Merchant, StartingAfter, json_body, text_query
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, responses
from tender.errors import (
    AmountTooLarge,
    ChargeAlreadyRefunded,
    DomainRuleViolated,
    NoSuchObject,
    NotFound,
    PaymentUnexpectedState,
)
from tender.services import refunds
from tender.services.objects import dumps, list_object, refund_object
from tender.services.refunds import RefundCreate
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(tags=["refunds"], responses=responses(*MERCHANT_KEY))

_ERRORS = responses(
    *JSON_BODY,
    DomainRuleViolated,
    NoSuchObject,
    PaymentUnexpectedState,
    ChargeAlreadyRefunded,
    AmountTooLarge,
    *IDEMPOTENT,
)


@router.post(
    "/v1/refunds",
    status_code=202,
    summary="Refund a captured payment (all that is left, or an amount)",
    responses={
        202: {
            "description": "Accepted: the refund, `pending` until the processor answers.",
            "headers": {"Location": {"description": "/v1/refunds/{id}", "schema": {"type": "string"}}},
        },
        **_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RefundCreate.model_json_schema()}},
        }
    },
)
async def create_refund(
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Checked synchronously (400 naming `param`) and answered 202 at once; a worker refunds through the
    processor and the refund becomes `succeeded` (the payment's `amount_refunded` grows, the balance
    follows) or `failed`. Poll `Location` for the outcome."""
    payload = await json_body(request)
    body = parse(RefundCreate, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        return refund_object(await refunds.create_refund(conn, merchant.merchant_id, body))

    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, "/v1/refunds", payload, change,
        status_code=202, headers=lambda r: {"Location": f"/v1/refunds/{r['id']}"},
    )  # fmt: skip


@router.get("/v1/refunds/{refund_id}", summary="Retrieve a refund", responses=responses(NotFound))
async def get_refund(refund_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    refund = await refunds.get_refund(container.db, merchant.merchant_id, refund_id)
    return Response(dumps(refund_object(refund)), media_type="application/json")


@router.get("/v1/refunds", summary="List refunds, newest first")
async def list_refunds(
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
    payment: Annotated[str | None, text_query("Only this payment's refunds")] = None,
) -> Response:
    rows, has_more = await refunds.list_refunds(
        container.db, merchant.merchant_id, limit=limit, starting_after=starting_after, payment=payment
    )
    body = list_object([refund_object(r) for r in rows], has_more=has_more, url="/v1/refunds")
    return Response(dumps(body), media_type="application/json")
