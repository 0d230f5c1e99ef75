"""/admin/v1: operator endpoints, behind TENDER_ADMIN_KEY."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Operator, StartingAfter, json_body, text_query
from tender.api.openapi import IDEMPOTENT, JSON_BODY, OPERATOR_KEY, responses
from tender.domain.models import Merchant
from tender.errors import DeadLetterResolved, DeadLetterUnsupported, NotFound
from tender.services import dead_letters, merchants, processor_accounts
from tender.services.objects import dumps, iso, list_object, merchant_object
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Operator], responses=responses(*OPERATOR_KEY))


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _with_keys(merchant: Merchant, secret_key: str, publishable_key: str) -> dict[str, Any]:
    return {**merchant_object(merchant), "secret_key": secret_key, "publishable_key": publishable_key}


_MERCHANT_BODY = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": merchants.MAX_NAME_LENGTH,
            "description": "At most 200 characters.",
        }
    },
}


@router.post(
    "/merchants",
    status_code=201,
    summary="Create a merchant (its keys are shown once)",
    responses=responses(*JSON_BODY, *IDEMPOTENT),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _MERCHANT_BODY}}}},
)
async def create_merchant(
    request: Request, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """A replay of the same `Idempotency-Key` shows the same merchant and keys again (the answer is kept
    encrypted by the vault key for as long as idempotency keys are kept), and creates nothing."""
    payload = await json_body(request)

    async def change(conn: Conn) -> dict[str, Any]:
        created = await merchants.create_merchant_in(conn, payload.get("name"))
        return _with_keys(created.merchant, created.secret_key, created.publishable_key)

    return await idempotent.post(
        container, merchants.OPERATOR_SCOPE, idempotency_key, "/admin/v1/merchants", payload, change,
        status_code=201, sealed=True,
    )  # fmt: skip


@router.post(
    "/merchants/{merchant_id}/roll_keys",
    summary="Roll a merchant's API keys (the new ones are shown once)",
    responses=responses(*JSON_BODY, NotFound, *IDEMPOTENT),
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": merchants.RollKeysRequest.model_json_schema()}}}
    },
)
async def roll_keys(
    merchant_id: str, request: Request, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """New `secret_key` and `publishable_key`; every key that worked before stops working after
    `expire_old_in` seconds (`old_keys_expire_at`), in every API process."""
    payload = await json_body(request)
    body = parse(merchants.RollKeysRequest, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        rolled = await merchants.roll_keys_in(conn, merchant_id, body.expire_old_in)
        return {
            **_with_keys(rolled.merchant, rolled.secret_key, rolled.publishable_key),
            "old_keys_expire_at": iso(rolled.old_keys_expire_at),
        }

    response = await idempotent.post(
        container, merchants.OPERATOR_SCOPE, idempotency_key, f"/admin/v1/merchants/{merchant_id}/roll_keys",
        payload, change, sealed=True,
    )  # fmt: skip
    container.authenticator.forget()  # this process at once; the others when the roll's notification arrives
    return response


@router.post(
    "/merchants/{merchant_id}/processor_accounts",
    status_code=201,
    summary="Give a merchant its own account at a processor (the credentials are never shown again)",
    responses=responses(*JSON_BODY, NotFound, *IDEMPOTENT),
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": processor_accounts.AccountCreate.model_json_schema()}}
        }
    },
)
async def create_processor_account(
    merchant_id: str, request: Request, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """`{"processor": "stripe", "secret_key", "webhook_secret"?}`: kept encrypted by the vault; the answer and
    every listing show only a hint (the key's last 4). It replaces the merchant's account at that processor."""
    payload = await json_body(request)
    body = parse(processor_accounts.AccountCreate, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        row = await processor_accounts.create(conn, container.vault, merchant_id, body)
        return processor_accounts.account_object(row)

    path = f"/admin/v1/merchants/{merchant_id}/processor_accounts"
    return await idempotent.post(
        container, merchants.OPERATOR_SCOPE, idempotency_key, path, payload, change, status_code=201
    )


@router.get(
    "/merchants/{merchant_id}/processor_accounts",
    summary="A merchant's processor accounts (never their credentials)",
    responses=responses(NotFound),
)
async def list_processor_accounts(merchant_id: str, container: ContainerDep) -> Response:
    rows = await processor_accounts.list_(container.db, merchant_id)
    data = [processor_accounts.account_object(r) for r in rows]
    url = f"/admin/v1/merchants/{merchant_id}/processor_accounts"
    return Response(dumps(list_object(data, has_more=False, url=url)), media_type="application/json")


@router.get("/dead_letters", summary="Work that exhausted its automatic retries")
async def list_dead_letters(
    container: ContainerDep,
    status: Annotated[str | None, text_query("Only dead letters of this status", 32)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
) -> Response:
    rows, has_more = await dead_letters.list_dead_letters(
        container.db, status=status, limit=limit, starting_after=starting_after
    )
    return Response(
        dumps(list_object(rows, has_more=has_more, url="/admin/v1/dead_letters")), media_type="application/json"
    )


@router.post(
    "/dead_letters/{dead_letter_id}/retry",
    summary="Retry a dead letter's work with fresh tries",
    responses=responses(NotFound, DeadLetterResolved, DeadLetterUnsupported),
)
async def retry_dead_letter(dead_letter_id: str, container: ContainerDep) -> Response:
    return Response(dumps(await dead_letters.retry(container.db, dead_letter_id)), media_type="application/json")
