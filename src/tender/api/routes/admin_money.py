"""/admin/v1 money endpoints: each merchant's fee plan, and the ledger verifier. Behind TENDER_ADMIN_KEY."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from tender.api.deps import ContainerDep, Operator, json_body
from tender.api.openapi import JSON_BODY, OPERATOR_KEY, body_schema, responses
from tender.errors import DomainRuleViolated, InvalidRequest, NotFound
from tender.services import fee_plans
from tender.services import ledger as ledger_service
from tender.services.fee_plans import FeePlanIn
from tender.services.objects import dumps, fee_plan_object, ledger_verification_object
from tender.services.validation import parse

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Operator], responses=responses(*OPERATOR_KEY))

_NO_MERCHANT = responses(NotFound)


def _json(body: dict[str, Any]) -> Response:
    return Response(dumps(body), media_type="application/json")


def _plan_body(payload: Any) -> FeePlanIn:
    try:
        return parse(FeePlanIn, payload)
    except InvalidRequest as exc:
        # The plan-wide checks (a catch-all rule, no duplicate rules) have no field of their own: name `rules`.
        if exc.param == "body":
            raise InvalidRequest(f"rules: {exc.message.split(': ', 1)[-1]}", param="rules") from None
        raise


@router.get("/merchants/{merchant_id}/fee_plan", summary="A merchant's fee plan", responses=_NO_MERCHANT)
async def get_fee_plan(merchant_id: str, container: ContainerDep) -> Response:
    """`default: true` when the merchant has no plan of its own."""
    return _json(fee_plan_object(await fee_plans.get_plan(container.db, merchant_id)))


@router.put(
    "/merchants/{merchant_id}/fee_plan",
    summary="Set a merchant's fee plan",
    responses=responses(*JSON_BODY, DomainRuleViolated, NotFound),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema(FeePlanIn)}}}
    },
)
async def put_fee_plan(merchant_id: str, request: Request, container: ContainerDep) -> Response:
    """Applies to captures from now on; payables already made keep their terms. A plan needs a catch-all
    rule (`payment_method` "*", `funding` "*")."""
    payload = await json_body(request)  # the checks every body gets (size, NUL, a JSON object)
    # Read again with exact numbers: orjson's floats are not the percent the operator wrote.
    body = _plan_body(fee_plans.loads_exact(await request.body()) if payload else payload)
    return _json(fee_plan_object(await fee_plans.set_plan(container.db, merchant_id, body)))


@router.delete("/merchants/{merchant_id}/fee_plan", summary="Back to the default fee plan", responses=_NO_MERCHANT)
async def delete_fee_plan(merchant_id: str, container: ContainerDep) -> Response:
    return _json(fee_plan_object(await fee_plans.reset_plan(container.db, merchant_id)))


@router.get("/ledger/verify", summary="Verify the ledger (200 whether or not it balances)")
async def verify_ledger(container: ContainerDep) -> Response:
    """`balanced` is true only when every entry balances, every account's stored balance equals its
    postings, and every merchant's balances equal the sums of their payables."""
    return _json(ledger_verification_object(await ledger_service.verify(container.db)))
