"""/admin/v1 processors: each processor's circuit breaker and pause, the operator's pause and resume, and the
operator events (circuits opening and closing, pauses, reconciliation runs). Behind TENDER_ADMIN_KEY."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Operator, StartingAfter, json_body, text_query
from tender.api.openapi import IDEMPOTENT, JSON_BODY, OPERATOR_KEY, body_schema, responses
from tender.errors import NotFound
from tender.services import merchants
from tender.services import processor_health as health
from tender.services.objects import dumps, list_object
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Operator], responses=responses(*OPERATOR_KEY))

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
_PAUSE_BODY = {"requestBody": {"content": {"application/json": {"schema": body_schema(health.PauseRequest)}}}}
_NAME_LENGTH = 64  # processor names are at most 32 characters (config.py); longer cannot be one


def _json(body: dict[str, Any]) -> Response:
    return Response(dumps(body), media_type="application/json")


@router.get("/processors", summary="The processors that are on: circuit breaker state and pause")
async def list_processors(container: ContainerDep) -> Response:
    """Every processor that is on, in the registry's order; one never called shows `closed`. `failure_rate` is
    a decimal string over the breaker's window (`calls_in_window` calls); `retry_at` is when an open circuit
    half-opens to probe."""
    found = await health.statuses(container.db, container.settings.circuit_policy, container.processors)
    data = [health.processor_object(s) for s in found]
    return _json(list_object(data, has_more=False, url="/admin/v1/processors"))


async def _set_paused(
    container: ContainerDep, name: str, request: Request, idempotency_key: str | None, *, paused: bool
) -> Response:
    # The body first, as on every route: bad input is a 400 naming its field, whatever the path names.
    payload = await json_body(request)
    body = parse(health.PauseRequest, payload) if paused else parse(health.ResumeRequest, payload)
    if len(name) > _NAME_LENGTH:
        raise NotFound("No such processor: it is unknown or not configured on this Tender", param="name")
    health.check_on(container.processors, name)
    reason = body.reason if isinstance(body, health.PauseRequest) else None

    async def change(conn: Conn) -> dict[str, Any]:
        status = await health.set_paused_in(conn, container.settings.circuit_policy, name, paused=paused, reason=reason)
        return health.processor_object(status)

    path = f"/admin/v1/processors/{name}/{'pause' if paused else 'resume'}"
    return await idempotent.post(container, merchants.OPERATOR_SCOPE, idempotency_key, path, payload, change)


@router.post(
    "/processors/{name}/pause",
    summary="Pause a processor: new payments go to the next processor of their route, or wait",
    responses=responses(*JSON_BODY, NotFound, *IDEMPOTENT),
    openapi_extra=_PAUSE_BODY,
)
async def pause_processor(
    name: str, request: Request, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """`{"reason"?}`. Look-ups, captures, cancels and refunds of payments already at the processor go on: a pause
    stops new charges, never the follow-up of old ones. Pausing a paused processor changes only its reason."""
    return await _set_paused(container, name, request, idempotency_key, paused=True)


@router.post(
    "/processors/{name}/resume",
    summary="Resume a paused processor",
    responses=responses(*JSON_BODY, NotFound, *IDEMPOTENT),
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": body_schema(health.ResumeRequest)}}}},
)
async def resume_processor(
    name: str, request: Request, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    return await _set_paused(container, name, request, idempotency_key, paused=False)


@router.get("/events", summary="Operator events: circuits opening and closing, pauses, reconciliation runs")
async def list_operator_events(
    container: ContainerDep,
    type: Annotated[str | None, text_query("Only events of this type, e.g. processor.circuit_opened")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
) -> Response:
    """Newest first. Types: `processor.circuit_opened`, `processor.circuit_half_opened`,
    `processor.circuit_closed`, `processor.paused`, `processor.resumed`, `reconciliation.completed`."""
    rows, has_more = await health.list_events(container.db, type=type, limit=limit, starting_after=starting_after)
    data = [health.operator_event_object(e) for e in rows]
    return _json(list_object(data, has_more=has_more, url="/admin/v1/events"))
