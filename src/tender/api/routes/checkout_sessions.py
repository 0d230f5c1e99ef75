"""/v1/checkout/sessions: the merchant's side of hosted checkout (the shopper's pages are in tender.web)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Merchant, StartingAfter, json_body, text_query
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, responses
from tender.errors import (
    CheckoutSessionBusy,
    DomainRuleViolated,
    DuplicateReference,
    NotFound,
    PaymentInProgress,
    SessionNotOpen,
)
from tender.services import checkout
from tender.services.objects import dumps, list_object, session_object
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(tags=["checkout"], responses=responses(*MERCHANT_KEY))

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
_NOT_FOUND = responses(NotFound)


@router.post(
    "/v1/checkout/sessions",
    status_code=201,
    summary="Create a checkout session (or get the open one of this reference)",
    responses={
        200: {"description": "A session of this `reference` is already open (or paid): that session."},
        **responses(*JSON_BODY, DomainRuleViolated, DuplicateReference, CheckoutSessionBusy, *IDEMPOTENT),
    },
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": checkout.SessionCreate.model_json_schema()}}}
    },
)
async def create_session(
    request: Request, merchant: Merchant, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Send the shopper to `url`. After paying they come back to `success_url?session_id=...&status=succeeded`;
    on Cancel, to `cancel_url`. The session expires after `expires_at` (24 h by default)."""
    payload = await json_body(request)
    body = parse(checkout.SessionCreate, payload)
    created: list[bool] = []

    async def change(conn: Conn) -> dict[str, Any]:
        session, is_new = await checkout.create(conn, merchant.merchant_id, body, base_url=container.settings.base_url)
        created.append(is_new)
        return session_object(session)

    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, "/v1/checkout/sessions", payload, change,
        status_code=lambda _: 201 if created[-1] else 200,
    )  # fmt: skip


@router.get("/v1/checkout/sessions", summary="List checkout sessions, newest first")
async def list_sessions(
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
    status: Annotated[str | None, text_query("open, complete or expired", 32)] = None,
) -> Response:
    page = await checkout.list_(
        container.db, merchant.merchant_id, limit=limit, starting_after=starting_after, status=status
    )
    sessions = [session_object(s) for s in page.rows]
    return Response(
        dumps(list_object(sessions, has_more=page.has_more, url="/v1/checkout/sessions")), media_type="application/json"
    )


@router.get("/v1/checkout/sessions/{session_id}", summary="Retrieve a checkout session", responses=_NOT_FOUND)
async def get_session(session_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    session = await checkout.retrieve(container.db, session_id, merchant.merchant_id)
    return Response(dumps(session_object(session)), media_type="application/json")


@router.post(
    "/v1/checkout/sessions/{session_id}/expire",
    summary="Expire an open checkout session now",
    responses=responses(NotFound, SessionNotOpen, PaymentInProgress, *IDEMPOTENT),
)
async def expire_session(
    session_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    payload = await json_body(request)
    if payload:
        parse(checkout.Expire, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        return session_object(await checkout.expire(conn, merchant.merchant_id, session_id))

    path = f"/v1/checkout/sessions/{session_id}/expire"
    return await idempotent.post(container, merchant.merchant_id, idempotency_key, path, payload, change)
