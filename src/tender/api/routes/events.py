"""/v1/events: what happened to the merchant's objects, as recorded with each change, and redelivery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Merchant, StartingAfter, json_body, text_query
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, responses
from tender.errors import NoSuchObject, NotFound, NoWebhookEndpoint
from tender.services import events as service
from tender.services.objects import delivery_object, dumps, event_object, list_object
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(tags=["events"], responses=responses(*MERCHANT_KEY))


@router.get("/v1/events", summary="List events, newest first")
async def list_events(
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
    type: Annotated[
        str | None, text_query("A type (payment.succeeded), a family (payment.*) or a comma-separated list", 1024)
    ] = None,
    object: Annotated[str | None, text_query("Only events about this object id")] = None,
) -> Response:
    """Every event carries `sequence`: 1, 2, 3... per object, in the order the changes happened."""
    page = await service.list_(
        container.db, merchant.merchant_id, limit=limit, starting_after=starting_after, type=type, object_id=object
    )
    body = list_object([event_object(e) for e in page.rows], has_more=page.has_more, url="/v1/events")
    return Response(dumps(body), media_type="application/json")


@router.get("/v1/events/{event_id}", summary="Retrieve an event", responses=responses(NotFound))
async def get_event(event_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    event = await service.get(container.db, merchant.merchant_id, event_id)
    return Response(dumps(event_object(event)), media_type="application/json")


@router.post(
    "/v1/events/{event_id}/redeliver",
    status_code=202,
    summary="Send an event to webhook endpoints again",
    responses=responses(*JSON_BODY, NoSuchObject, NoWebhookEndpoint, NotFound, *IDEMPOTENT),
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": service.Redeliver.model_json_schema()}}}},
)
async def redeliver(
    event_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """To one `endpoint`, or to every enabled endpoint listening to its type: due at once, with a fresh
    retry window, under the same `webhook-id` (the event id). Answers the deliveries queued."""
    payload = await json_body(request)
    body = parse(service.Redeliver, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        deliveries = await service.redeliver(conn, merchant.merchant_id, event_id, body)
        data = [delivery_object(d) for d in deliveries]
        return list_object(data, has_more=False, url=f"/v1/events/{event_id}/redeliver")

    path = f"/v1/events/{event_id}/redeliver"
    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, path, payload, change, status_code=202
    )
