"""/admin/v1: operator endpoints, behind TENDER_ADMIN_KEY."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from tender.api.deps import ContainerDep, Operator, json_body
from tender.services import dead_letters, merchants
from tender.services.objects import dumps, list_object, merchant_object

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Operator])


@router.post("/merchants", status_code=201, summary="Create a merchant (its keys are shown once)")
async def create_merchant(request: Request, container: ContainerDep) -> Response:
    payload = await json_body(request)
    created = await merchants.create_merchant(container.db, payload.get("name"))
    body = {
        **merchant_object(created.merchant),
        "secret_key": created.secret_key,
        "publishable_key": created.publishable_key,
    }
    return Response(dumps(body), status_code=201, media_type="application/json")


@router.get("/dead_letters", summary="Work that exhausted its automatic retries")
async def list_dead_letters(
    container: ContainerDep,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: str | None = None,
) -> Response:
    rows, has_more = await dead_letters.list_dead_letters(
        container.db, status=status, limit=limit, starting_after=starting_after
    )
    return Response(
        dumps(list_object(rows, has_more=has_more, url="/admin/v1/dead_letters")), media_type="application/json"
    )


@router.post("/dead_letters/{dead_letter_id}/retry", summary="Retry a dead letter's work with fresh tries")
async def retry_dead_letter(dead_letter_id: str, container: ContainerDep) -> Response:
    return Response(dumps(await dead_letters.retry(container.db, dead_letter_id)), media_type="application/json")
