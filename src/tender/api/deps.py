"""Request dependencies: API-key and operator authentication, `Prefer: wait`, the JSON body; the container
and the live status hub come from tender.http.deps (shared with the hosted pages) and are re-exported here."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Query, Request

from tender.api import prefer
from tender.domain.ids import MAX_ID_LENGTH
from tender.errors import (
    AdminDisabled,
    AuthenticationFailed,
    InvalidJson,
    InvalidRequest,
    MissingApiKey,
    SecretKeyRequired,
)
from tender.http.deps import ContainerDep as ContainerDep
from tender.http.deps import HubDep as HubDep
from tender.services.merchants import Principal
from tender.services.validation import check_json


def text_query(description: str, max_length: int = MAX_ID_LENGTH) -> Any:
    """A text query parameter with its documented maximum length (API.md "Security limits"): longer is a 400."""
    return Query(max_length=max_length, description=f"{description} (at most {max_length} characters).")


StartingAfter = Annotated[str | None, text_query("The last id of the previous page")]


async def prefer_wait(  # async: a plain def would run in the thread pool
    request: Request,
    # Declared for the OpenAPI document; parsed from every Prefer header the request carries.
    _prefer: Annotated[str | None, Header(alias="Prefer", description=prefer.PREFER_DESCRIPTION)] = None,
) -> int | None:
    return prefer.wait_seconds(request.headers.getlist("prefer"))


PreferWait = Annotated[int | None, Depends(prefer_wait)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingApiKey("No valid API key provided: send 'Authorization: Bearer sk_test_...'")
    return token.strip()


async def any_key(request: Request, container: ContainerDep) -> Principal:
    principal = await container.authenticator.authenticate(_bearer(request))
    if principal is None:
        raise AuthenticationFailed("Invalid API key provided.")
    return principal


async def secret_key(principal: Annotated[Principal, Depends(any_key)]) -> Principal:
    if principal.kind != "secret":
        raise SecretKeyRequired(
            "A publishable key may only create card tokens and drive the hosted checkout; use a secret key."
        )
    return principal


Merchant = Annotated[Principal, Depends(secret_key)]


async def merchant_of(request: Request) -> Principal:
    """`Merchant` for a route that resolves it itself: FastAPI's dependency tree (this chain, the container, the
    hub, two headers) cost about 150 us of the API's CPU per request on the hottest route (POST /v1/payments,
    issue 16), against a few here."""
    return await secret_key(await any_key(request, request.app.state.container))


def header_parameter(name: str, description: str | None = None) -> dict[str, Any]:
    """An optional text header as the OpenAPI document shows a declared `Header` parameter, for a route that
    reads its headers itself (`openapi_extra={"parameters": [...]}`)."""
    schema: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "null"}], "title": name}
    if description is not None:
        schema["description"] = description
    parameter: dict[str, Any] = {"name": name, "in": "header", "required": False, "schema": schema}
    if description is not None:
        parameter["description"] = description
    return parameter


async def operator(request: Request, container: ContainerDep) -> None:
    expected = container.settings.admin_key
    if expected is None:
        raise AdminDisabled("The admin API is disabled: set TENDER_ADMIN_KEY.")
    if not hmac.compare_digest(_bearer(request).encode(), expected.get_secret_value().encode()):
        raise AuthenticationFailed("Invalid admin key.")


Operator = Depends(operator)


async def json_body(request: Request) -> Any:
    """The body as JSON whatever its Content-Type (curl -d sends form-encoded), or a 400 naming `body`.
    Every route reads its body here, but for the hosted page's forms (web/pages.py) and processors'
    notifications (read raw for their signature, checked once verified); all three refuse NUL."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidJson("body: the request body is not valid JSON", param="body") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("body: the request body must be a JSON object", param="body")
    check_json(payload)  # a NUL anywhere is a 400 naming its field, before any of it reaches PostgreSQL
    return payload
