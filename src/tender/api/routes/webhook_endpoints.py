"""/v1/webhook_endpoints: where a merchant's events are delivered, and what became of each delivery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Merchant, StartingAfter, json_body, text_query
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, responses
from tender.errors import NotFound, UrlInvalid
from tender.services import webhook_endpoints as service
from tender.services.objects import delivery_object, dumps, endpoint_object, list_object
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(tags=["webhooks"], responses=responses(*MERCHANT_KEY))

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
_NOT_FOUND = responses(NotFound)
_ERRORS = responses(*JSON_BODY, UrlInvalid, NotFound, *IDEMPOTENT)


def _json(body: dict[str, Any], status_code: int = 200) -> Response:
    return Response(dumps(body), status_code=status_code, media_type="application/json")


@router.post(
    "/v1/webhook_endpoints",
    status_code=201,
    summary="Create a webhook endpoint (its secret is shown once)",
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": service.EndpointCreate.model_json_schema()}}}
    },
)
async def create_endpoint(
    request: Request, merchant: Merchant, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Events of the listed types (or all, `["*"]`) are POSTed to `url`, signed per Standard Webhooks with
    `secret` (`whsec_...`): keep it, it is not shown again. `url` must be a public address unless the
    operator set `TENDER_WEBHOOK_ALLOW_PRIVATE`."""
    payload = await json_body(request)
    body = parse(service.EndpointCreate, payload)
    allow_private = container.settings.webhook_allow_private

    async def change(conn: Conn) -> dict[str, Any]:
        endpoint, secret = await service.create(
            conn, container.vault, merchant.merchant_id, body, allow_private=allow_private
        )
        return endpoint_object(endpoint, secret=secret)

    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, "/v1/webhook_endpoints", payload, change,
        status_code=201, sealed=True,
    )  # fmt: skip


@router.get("/v1/webhook_endpoints", summary="List webhook endpoints, newest first")
async def list_endpoints(
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
) -> Response:
    page = await service.list_(container.db, merchant.merchant_id, limit=limit, starting_after=starting_after)
    endpoints = [endpoint_object(e) for e in page.rows]
    return _json(list_object(endpoints, has_more=page.has_more, url="/v1/webhook_endpoints"))


@router.get("/v1/webhook_endpoints/{endpoint_id}", summary="Retrieve a webhook endpoint", responses=_NOT_FOUND)
async def get_endpoint(endpoint_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    return _json(endpoint_object(await service.retrieve(container.db, merchant.merchant_id, endpoint_id)))


_UPDATE: dict[str, Any] = {
    "summary": "Update a webhook endpoint (url, events, description, enabled)",
    "responses": _ERRORS,
    "openapi_extra": {
        "requestBody": {"content": {"application/json": {"schema": service.EndpointUpdate.model_json_schema()}}}
    },
}


# POST as Stripe does, PATCH as REST clients expect: one handler, an operation id each.
@router.post("/v1/webhook_endpoints/{endpoint_id}", operation_id="update_webhook_endpoint", **_UPDATE)
@router.patch("/v1/webhook_endpoints/{endpoint_id}", operation_id="patch_webhook_endpoint", **_UPDATE)
async def update_endpoint(
    endpoint_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Only the fields sent change. `enabled: false` stops deliveries at once (pending ones fail and can be
    redelivered); `enabled: true` resumes them for new events."""
    payload = await json_body(request)
    body = parse(service.EndpointUpdate, payload)
    allow_private = container.settings.webhook_allow_private

    async def change(conn: Conn) -> dict[str, Any]:
        endpoint = await service.update(conn, merchant.merchant_id, endpoint_id, body, allow_private=allow_private)
        return endpoint_object(endpoint)

    path = f"/v1/webhook_endpoints/{endpoint_id}"
    return await idempotent.post(container, merchant.merchant_id, idempotency_key, path, payload, change)


@router.delete("/v1/webhook_endpoints/{endpoint_id}", summary="Delete a webhook endpoint", responses=_NOT_FOUND)
async def delete_endpoint(endpoint_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    return _json(await service.delete(container.db, merchant.merchant_id, endpoint_id))


@router.post(
    "/v1/webhook_endpoints/{endpoint_id}/rotate_secret",
    summary="Rotate the signing secret (the old one keeps signing for 24 hours)",
    responses=_NOT_FOUND,
)
async def rotate_secret(
    endpoint_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Answers the endpoint with its new `secret`, shown once. For 24 hours every delivery carries two
    signatures, one per secret, so receivers can switch to the new secret without missing an event."""
    payload = await json_body(request)
    if payload:
        parse(service.EndpointRotate, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        endpoint, secret = await service.rotate_secret(conn, container.vault, merchant.merchant_id, endpoint_id)
        return endpoint_object(endpoint, secret=secret)

    path = f"/v1/webhook_endpoints/{endpoint_id}/rotate_secret"
    return await idempotent.post(container, merchant.merchant_id, idempotency_key, path, payload, change, sealed=True)


@router.get(
    "/v1/webhook_endpoints/{endpoint_id}/deliveries",
    summary="List an endpoint's deliveries with every attempt, newest first",
    responses=_NOT_FOUND,
)
async def list_deliveries(
    endpoint_id: str,
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
    status: Annotated[str | None, text_query("pending, succeeded or failed", 32)] = None,
    event: Annotated[str | None, text_query("Only this event's delivery")] = None,
) -> Response:
    """Each delivery is one event for this endpoint; `attempts` lists every request sent, with its status
    code (null: no answer), latency and error."""
    page = await service.list_deliveries(
        container.db,
        merchant.merchant_id,
        endpoint_id,
        limit=limit,
        starting_after=starting_after,
        status=status,
        event=event,
    )
    deliveries = [delivery_object(d) for d in page.rows]
    url = f"/v1/webhook_endpoints/{endpoint_id}/deliveries"
    return _json(list_object(deliveries, has_more=page.has_more, url=url))
