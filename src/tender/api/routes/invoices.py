"""/v1/invoices: a subscription's invoices, one per period (made by services/billing.py), read and listed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from tender.api.deps import ContainerDep, Merchant, StartingAfter, text_query
from tender.api.openapi import MERCHANT_KEY, responses
from tender.errors import NotFound
from tender.services import subscriptions as service
from tender.services.billing import invoice_object
from tender.services.objects import dumps, list_object

router = APIRouter(tags=["subscriptions"], responses=responses(*MERCHANT_KEY))


@router.get("/v1/invoices", summary="List invoices, newest first")
async def list_invoices(
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
    subscription: Annotated[str | None, text_query("Only this subscription's invoices")] = None,
    customer: Annotated[str | None, text_query("Only this customer's invoices")] = None,
    status: Annotated[str | None, text_query("Only invoices in this status", 20)] = None,
) -> Response:
    page = await service.list_invoices(
        container.db, merchant.merchant_id, limit=limit, starting_after=starting_after, subscription=subscription,
        customer=customer, status=status,
    )  # fmt: skip
    body = list_object([invoice_object(i) for i in page.rows], has_more=page.has_more, url="/v1/invoices")
    return Response(dumps(body), media_type="application/json")


@router.get("/v1/invoices/{invoice_id}", summary="Retrieve an invoice", responses=responses(NotFound))
async def get_invoice(invoice_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    invoice = await service.get_invoice(container.db, merchant.merchant_id, invoice_id)
    return Response(dumps(invoice_object(invoice)), media_type="application/json")
