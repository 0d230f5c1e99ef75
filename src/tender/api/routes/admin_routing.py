"""/admin/v1/merchants/{id}/routing: a merchant's routing rules (which processors its payments try, in order).
Behind TENDER_ADMIN_KEY."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from tender.api.deps import ContainerDep, Operator, json_body
from tender.api.openapi import JSON_BODY, OPERATOR_KEY, body_schema, responses
from tender.bootstrap import Container
from tender.errors import DomainRuleViolated, NotFound
from tender.services import routing
from tender.services.objects import dumps

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Operator], responses=responses(*OPERATOR_KEY))


def _json(body: dict[str, Any]) -> Response:
    return Response(dumps(body), media_type="application/json")


def _default(container: Container) -> list[str]:
    return [container.default_processor]


@router.get("/merchants/{merchant_id}/routing", summary="A merchant's routing rules", responses=responses(NotFound))
async def get_routing(merchant_id: str, container: ContainerDep) -> Response:
    """`rules: []` when the merchant has none: every payment goes to `default`."""
    return _json(await routing.get(container.db, merchant_id, default=_default(container)))


@router.put(
    "/merchants/{merchant_id}/routing",
    summary="Set a merchant's routing rules",
    responses=responses(*JSON_BODY, DomainRuleViolated, NotFound),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema(routing.RoutingIn)}}}
    },
)
async def put_routing(merchant_id: str, request: Request, container: ContainerDep) -> Response:
    """Replaces the rules; payments accepted from now on follow them. The first rule whose conditions
    (`payment_method_type`, `currency`, `card_brand`, `amount_min`..`amount_max` inclusive) all hold routes
    the payment: its `processors` in order, or, with a `split`, a share of payments to each named processor
    first. No rule matches: `default`. Every processor named must be on (400 naming `rules[i].processors[j]`).
    Setting the same rules again changes nothing but `updated`, so a retry is safe."""
    payload = await json_body(request)  # the checks every body gets (size, NUL, a JSON object)
    return _json(
        await routing.put(
            container.db, merchant_id, payload, on=container.processors.keys(), default=_default(container)
        )
    )
