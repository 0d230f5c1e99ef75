"""/v1/checkout/sessions: the merchant's side of hosted checkout (the shopper's pages are in tender.web)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Merchant, StartingAfter, json_body, text_query
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, body_schema, responses
from tender.domain.models import CheckoutStatus
from tender.errors import (
    CheckoutSessionBusy,
    DomainRuleViolated,
    DuplicateReference,
    NotFound,
    PaymentInProgress,
    ProcessorUnavailable,
    SessionNotOpen,
)
from tender.services import checkout, checkout_stripe
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
        **responses(
            *JSON_BODY, DomainRuleViolated, DuplicateReference, CheckoutSessionBusy, ProcessorUnavailable, *IDEMPOTENT
        ),
    },
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": body_schema(checkout.SessionCreate)}}}},
)
async def create_session(
    request: Request, merchant: Merchant, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Send the shopper to `url`. After paying they come back to `success_url?session_id=...&status=succeeded`;
    on Cancel, to `cancel_url`. The session expires after `expires_at` (24 h by default).
    With `"processor": "stripe"`, `url` is Stripe Checkout's page, registered there once per session."""
    payload = await json_body(request)
    body = parse(checkout.SessionCreate, payload)
    created: list[bool] = []
    if body.processor is not None and body.processor in checkout.HOSTED_BY:
        return await _create_hosted(request, merchant, container, body, payload, idempotency_key)

    async def change(conn: Conn) -> dict[str, Any]:
        session, is_new = await checkout.create(conn, merchant.merchant_id, body, base_url=container.settings.base_url)
        created.append(is_new)
        return session_object(session)

    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, "/v1/checkout/sessions", payload, change,
        status_code=lambda _: 201 if created[-1] else 200,
    )  # fmt: skip


async def _create_hosted(
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    body: checkout.SessionCreate,
    payload: Any,
    idempotency_key: str | None,
) -> Response:
    """Stripe Checkout: the session on record and registered at Stripe first (services/checkout_stripe.py),
    then Stripe's id and page written in the transaction that answers (and stores the idempotent answer)."""
    access = checkout_stripe.StripeAccess.of(container.settings)
    session, is_new, registered = await checkout_stripe.create(
        container.db, container.vault, access, merchant.merchant_id, body, base_url=container.settings.base_url
    )

    async def change(conn: Conn) -> dict[str, Any]:
        return session_object(await checkout_stripe.record(conn, session, registered))

    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, "/v1/checkout/sessions", payload, change,
        status_code=lambda _: 201 if is_new else 200,
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
    """A Stripe Checkout session still open is looked up at Stripe first (the shopper is back on `success_url`)."""
    s = container.settings
    session = await checkout_stripe.retrieve(
        container.db, container.vault, checkout_stripe.StripeAccess.of(s), session_id, merchant.merchant_id,
        tz=s.business_tz,
    )  # fmt: skip
    return Response(dumps(session_object(session)), media_type="application/json")


@router.post(
    "/v1/checkout/sessions/{session_id}/expire",
    summary="Expire an open checkout session now",
    responses=responses(
        NotFound, SessionNotOpen, PaymentInProgress, CheckoutSessionBusy, ProcessorUnavailable, *IDEMPOTENT
    ),
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

    session = await checkout.retrieve(container.db, session_id, merchant.merchant_id)
    if session.processor is not None and session.status is CheckoutStatus.OPEN:
        # Expired at Stripe first (the shopper may be paying there now), then here.
        s = container.settings
        access = checkout_stripe.StripeAccess.of(s)
        await checkout_stripe.expire(
            container.db, container.vault, access, merchant.merchant_id, session_id, tz=s.business_tz
        )

    async def change(conn: Conn) -> dict[str, Any]:
        current = await checkout.get(conn, session_id, merchant.merchant_id)
        if current.processor is not None and current.status is CheckoutStatus.EXPIRED:
            return session_object(current)
        return session_object(await checkout.expire(conn, merchant.merchant_id, session_id))

    path = f"/v1/checkout/sessions/{session_id}/expire"
    return await idempotent.post(container, merchant.merchant_id, idempotency_key, path, payload, change)
