"""/v1/test_clocks: simulated time for tests and demos (Stripe's test clocks)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Merchant, StartingAfter, json_body
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, body_schema, responses
from tender.api.routes.subscriptions import setup_of
from tender.errors import NotFound
from tender.services import test_clocks as service
from tender.services.objects import clock_object, dumps, list_object
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(tags=["test clocks"], responses=responses(*MERCHANT_KEY))

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _json(body: dict[str, Any], status_code: int = 200) -> Response:
    return Response(dumps(body), status_code=status_code, media_type="application/json")


@router.post(
    "/v1/test_clocks",
    status_code=201,
    summary="Create a test clock",
    responses=responses(*JSON_BODY, *IDEMPOTENT),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body_schema(service.TestClockCreate)}},
        }
    },
)
async def create_test_clock(
    request: Request, merchant: Merchant, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Customers created with `test_clock` live on its `frozen_time` from then on."""
    payload = await json_body(request)
    body = parse(service.TestClockCreate, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        return clock_object(await service.create(conn, merchant.merchant_id, body))

    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, "/v1/test_clocks", payload, change, status_code=201
    )


@router.get("/v1/test_clocks", summary="List test clocks, newest first")
async def list_test_clocks(
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
) -> Response:
    page = await service.list_(container.db, merchant.merchant_id, limit=limit, starting_after=starting_after)
    return _json(list_object([clock_object(c) for c in page.rows], has_more=page.has_more, url="/v1/test_clocks"))


@router.get("/v1/test_clocks/{clock_id}", summary="Retrieve a test clock", responses=responses(NotFound))
async def get_test_clock(clock_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    return _json(clock_object(await service.retrieve(container.db, merchant.merchant_id, clock_id)))


@router.post(
    "/v1/test_clocks/{clock_id}/advance",
    summary="Advance a test clock and run what falls due",
    responses=responses(*JSON_BODY, NotFound),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body_schema(service.TestClockAdvance)}},
        }
    },
)
async def advance_test_clock(clock_id: str, request: Request, merchant: Merchant, container: ContainerDep) -> Response:
    """Moves `frozen_time` forward (an earlier time is a 400) and runs everything of the clock's customers that
    falls due up to it (renewals, dunning retries, trial ends), answering once done, with `status` `ready`
    (`advancing`: a payment did not end in time, e.g. no worker is running; advance to the same time again).
    The same time again runs nothing: retrying an advance is safe without an Idempotency-Key."""
    body = parse(service.TestClockAdvance, await json_body(request))
    clock = await service.advance(container.db, merchant.merchant_id, clock_id, body, setup=setup_of(container))
    return _json(clock_object(clock))
