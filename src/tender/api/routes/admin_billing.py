"""/admin/v1 billing settings: each merchant's dunning schedule and what follows a subscription's last failed try.
Behind TENDER_ADMIN_KEY."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from tender.api.deps import ContainerDep, Operator, json_body
from tender.api.openapi import JSON_BODY, OPERATOR_KEY, body_schema, responses
from tender.errors import NotFound
from tender.services import billing_settings
from tender.services.billing_settings import BillingSettingsIn
from tender.services.objects import dumps
from tender.services.validation import parse

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Operator], responses=responses(*OPERATOR_KEY))


@router.get(
    "/merchants/{merchant_id}/billing_settings",
    summary="A merchant's billing settings (dunning)",
    responses=responses(NotFound),
)
async def get_billing_settings(merchant_id: str, container: ContainerDep) -> Response:
    """Default: retries 1, 3 and 5 days after a period's due time, then `unpaid`."""
    body = await billing_settings.get(container.db, merchant_id)
    return Response(dumps(body), media_type="application/json")


@router.put(
    "/merchants/{merchant_id}/billing_settings",
    summary="Set a merchant's billing settings (dunning)",
    responses=responses(*JSON_BODY, NotFound),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema(BillingSettingsIn)}}}
    },
)
async def put_billing_settings(merchant_id: str, request: Request, container: ContainerDep) -> Response:
    """`{"dunning_days": [1, 3, 5], "on_final_failure": "unpaid" | "cancel"}`. Applies to subscriptions created
    from now on; running ones keep the settings they were created with."""
    body = parse(BillingSettingsIn, await json_body(request))
    result = await billing_settings.put(container.db, merchant_id, body)
    return Response(dumps(result), media_type="application/json")
