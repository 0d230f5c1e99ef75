"""Money after capture, as the merchant reads it: /v1/payables, /v1/settlements, /v1/balance and
/v1/balance_transactions. Read-only: payables are made by captures and refunds, settlements by the worker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from tender.api.deps import ContainerDep, Merchant, StartingAfter, text_query
from tender.api.openapi import MERCHANT_KEY, responses
from tender.errors import NotFound
from tender.services import balance as service
from tender.services.objects import (
    balance_object,
    balance_transaction_object,
    dumps,
    list_object,
    payable_object,
    settlement_object,
)

router = APIRouter(tags=["money"], responses=responses(*MERCHANT_KEY))

Limit = Annotated[int, Query(ge=1, le=100, description="1 to 100")]
After = StartingAfter
_NOT_FOUND = responses(NotFound)


def _json(body: dict[str, Any]) -> Response:
    return Response(dumps(body), media_type="application/json")


@router.get("/v1/payables", summary="List payables, newest first")
async def list_payables(
    merchant: Merchant,
    container: ContainerDep,
    limit: Limit = 10,
    starting_after: After = None,
    status: Annotated[str | None, text_query("waiting_funds or paid", 32)] = None,
    payment: Annotated[str | None, text_query("Only this payment's payables")] = None,
) -> Response:
    """What each capture earns (and each refund takes back): amount, fee, net and the payment date."""
    rows, has_more = await service.list_payables(
        container.db, merchant.merchant_id, limit=limit, starting_after=starting_after, status=status, payment=payment
    )
    return _json(list_object([payable_object(p) for p in rows], has_more=has_more, url="/v1/payables"))


@router.get("/v1/payables/{payable_id}", summary="Retrieve a payable", responses=_NOT_FOUND)
async def get_payable(payable_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    return _json(payable_object(await service.get_payable(container.db, merchant.merchant_id, payable_id)))


@router.get("/v1/settlements", summary="List settlements, newest first")
async def list_settlements(
    merchant: Merchant, container: ContainerDep, limit: Limit = 10, starting_after: After = None
) -> Response:
    """One settlement per currency and day: the payables paid that day, summed."""
    rows, has_more = await service.list_settlements(
        container.db, merchant.merchant_id, limit=limit, starting_after=starting_after
    )
    return _json(list_object([settlement_object(s) for s in rows], has_more=has_more, url="/v1/settlements"))


@router.get("/v1/settlements/{settlement_id}", summary="Retrieve a settlement", responses=_NOT_FOUND)
async def get_settlement(settlement_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    return _json(settlement_object(await service.get_settlement(container.db, merchant.merchant_id, settlement_id)))


@router.get("/v1/balance", summary="The balance: waiting funds and available, per currency")
async def get_balance(merchant: Merchant, container: ContainerDep) -> Response:
    """From the ledger; equal to the sums of the payables' `net` by status."""
    return _json(balance_object(await service.balance(container.db, merchant.merchant_id)))


@router.get("/v1/balance_transactions", summary="List balance transactions (ledger entries), newest first")
async def list_balance_transactions(
    merchant: Merchant,
    container: ContainerDep,
    limit: Limit = 10,
    starting_after: After = None,
    type: Annotated[str | None, text_query("payment, refund or settlement", 32)] = None,
    source: Annotated[str | None, text_query("The payment, refund or settlement id")] = None,
) -> Response:
    """Every movement of the merchant's money: `status` is the ledger's, `pending` until a settlement makes
    it `available` (or at once for money that starts available), whatever `available_on` says."""
    rows, has_more = await service.list_balance_transactions(
        container.db,
        merchant.merchant_id,
        limit=limit,
        starting_after=starting_after,
        type=type,
        source=source,
    )
    data = [balance_transaction_object(t) for t in rows]
    return _json(list_object(data, has_more=has_more, url="/v1/balance_transactions"))


@router.get("/v1/balance_transactions/{transaction_id}", summary="Retrieve a balance transaction", responses=_NOT_FOUND)
async def get_balance_transaction(transaction_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    found = await service.get_balance_transaction(container.db, merchant.merchant_id, transaction_id)
    return _json(balance_transaction_object(found))
