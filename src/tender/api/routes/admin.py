"""/admin/v1: operator endpoints, behind TENDER_ADMIN_KEY."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from tender.api.deps import ContainerDep, Operator, json_body
from tender.services import merchants
from tender.services.objects import dumps, merchant_object

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
