"""/v1/subscriptions: create, update, cancel, retrieve and list subscriptions (services/subscriptions.py;
their renewals and dunning are services/billing.py's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Merchant, StartingAfter, json_body, text_query
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, responses
from tender.bootstrap import Container
from tender.errors import (
    DomainRuleViolated,
    DuplicateReference,
    NoSuchObject,
    NotFound,
    SubscriptionUnexpectedState,
)
from tender.services import subscriptions as service
from tender.services.billing import BillingSetup, subscription_object
from tender.services.objects import dumps, list_object
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(tags=["subscriptions"], responses=responses(*MERCHANT_KEY))

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
_CREATE_ERRORS = responses(*JSON_BODY, DomainRuleViolated, NoSuchObject, DuplicateReference, *IDEMPOTENT)
_CHANGE_ERRORS = responses(*JSON_BODY, DomainRuleViolated, NoSuchObject, NotFound, SubscriptionUnexpectedState,
                           *IDEMPOTENT)  # fmt: skip


def _body(model: Any) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _json(body: dict[str, Any]) -> Response:
    return Response(dumps(body), media_type="application/json")


def setup_of(container: Container) -> BillingSetup:
    """Billing's view of the deployment: the business time zone, the default processor and those that are on."""
    s = container.settings
    return BillingSetup.of(s.business_tz, container.default_processor, container.processors.keys())


@router.post(
    "/v1/subscriptions",
    status_code=201,
    summary="Create a subscription (without a trial, its first period is charged at once)",
    responses=_CREATE_ERRORS,
    openapi_extra=_body(service.SubscriptionCreate),
)
async def create_subscription(
    request: Request, merchant: Merchant, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """The customer (on its test clock's time, if it has one) is billed `amount` every `interval_count`
    `interval`s, periods following the calendar from the anchor (the start, or the trial's end). Each period
    is an invoice paid by an off-session payment with the subscription's method, else the customer's
    default; failed payments are retried per the merchant's dunning days, then the subscription is `unpaid`
    (or `canceled`, `on_final_failure`)."""
    payload = await json_body(request)
    body = parse(service.SubscriptionCreate, payload)
    setup = setup_of(container)

    async def change(conn: Conn) -> dict[str, Any]:
        return subscription_object(await service.create(conn, merchant.merchant_id, body, setup=setup))

    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, "/v1/subscriptions", payload, change, status_code=201
    )


@router.get("/v1/subscriptions", summary="List subscriptions, newest first")
async def list_subscriptions(
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
    customer: Annotated[str | None, text_query("Only this customer's subscriptions")] = None,
    status: Annotated[str | None, text_query("Only subscriptions in this status", 20)] = None,
) -> Response:
    page = await service.list_(
        container.db, merchant.merchant_id, limit=limit, starting_after=starting_after, customer=customer,
        status=status,
    )  # fmt: skip
    data = [subscription_object(s) for s in page.rows]
    return _json(list_object(data, has_more=page.has_more, url="/v1/subscriptions"))


@router.get("/v1/subscriptions/{subscription_id}", summary="Retrieve a subscription", responses=responses(NotFound))
async def get_subscription(subscription_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    return _json(subscription_object(await service.get(container.db, merchant.merchant_id, subscription_id)))


@router.post(
    "/v1/subscriptions/{subscription_id}",
    summary="Update a subscription (payment method, amount from the next period, cancel at period end, metadata)",
    responses=_CHANGE_ERRORS,
    openapi_extra=_body(service.SubscriptionUpdate),
)
async def update_subscription(
    subscription_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A new `payment_method` is tried at the next attempt (a renewal, or the next dunning retry); a new
    `amount` applies from the next period (`next_amount` until then)."""
    payload = await json_body(request)
    body = parse(service.SubscriptionUpdate, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        return subscription_object(await service.update(conn, merchant.merchant_id, subscription_id, body))

    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, f"/v1/subscriptions/{subscription_id}", payload, change
    )


@router.post(
    "/v1/subscriptions/{subscription_id}/cancel",
    summary="Cancel a subscription now, or at the end of its period",
    responses=_CHANGE_ERRORS,
    openapi_extra=_body(service.SubscriptionCancel),
)
async def cancel_subscription(
    subscription_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Now: `canceled` at once, its open invoice void (unless a payment of it is in flight, which then
    settles it). `at_period_end`: `cancel_at_period_end` is set and it ends when the period does."""
    payload = await json_body(request)
    body = parse(service.SubscriptionCancel, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        return subscription_object(await service.cancel(conn, merchant.merchant_id, subscription_id, body))

    path = f"/v1/subscriptions/{subscription_id}/cancel"
    return await idempotent.post(container, merchant.merchant_id, idempotency_key, path, payload, change)
