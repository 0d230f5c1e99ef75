"""Webhook endpoints: where a merchant wants its events, which ones, and the secret that signs them.

The secret is shown once (on create and on rotation) and kept encrypted by the vault key, because it must
be read back to sign. Rotating keeps the old secret signing beside the new one for 24 hours, so a merchant
can deploy the new one without losing a delivery (Standard Webhooks receivers accept any valid signature).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tender.domain.ids import WEBHOOK_ENDPOINT, new_id
from tender.domain.models import DeliveryReport, DeliveryStatus, WebhookDelivery, WebhookEndpoint
from tender.domain.webhooks import ALL_EVENTS, EVENT_TYPES, new_secret
from tender.errors import InvalidRequest, NotFound, UrlInvalid
from tender.services.url_guard import MAX_URL_LENGTH, BlockedURL, check_url
from tender.store import webhooks as store
from tender.store.db import Conn, Database, Page
from tender.vault import Vault

SECRET_OVERLAP = timedelta(hours=24)
MAX_DESCRIPTION_LENGTH = 500
# Event types are at most 40 characters and fewer than 64 exist: a longer list or name cannot be valid.
EventList = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)]
EVENTS_DESCRIPTION = 'Event types to send (at most 64), or ["*"] for all.'
DELIVERY_STATUSES = tuple(DeliveryStatus)


class EndpointCreate(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    url: str = Field(
        max_length=MAX_URL_LENGTH, description="Where events are POSTed: a public http(s) URL (at most 2048)."
    )
    events: EventList = Field(default_factory=lambda: [ALL_EVENTS], description=EVENTS_DESCRIPTION)
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION_LENGTH, description="At most 500 characters."
    )
    enabled: bool = True


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    url: str | None = Field(default=None, max_length=MAX_URL_LENGTH, description="A public http(s) URL (at most 2048).")
    events: EventList | None = Field(default=None, description=EVENTS_DESCRIPTION)
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION_LENGTH, description="At most 500 characters."
    )
    enabled: bool | None = Field(default=None, description="false stops deliveries; true resumes new ones.")


class EndpointRotate(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")  # no parameters: a body, if any, must be empty


def _url(url: str, allow_private: bool) -> str:
    try:
        return str(check_url(url, allow_private=allow_private))
    except BlockedURL as exc:
        raise UrlInvalid(f"url: {exc}", param="url") from None


def _events(events: list[str]) -> list[str]:
    if not events:
        raise InvalidRequest('events: list at least one event type, or ["*"] for all', param="events")
    for i, kind in enumerate(events):
        if kind != ALL_EVENTS and kind not in EVENT_TYPES:
            raise InvalidRequest(
                f"events[{i}]: unknown event type; use one of {', '.join(EVENT_TYPES)} or *",
                param=f"events[{i}]",
            )
    return [ALL_EVENTS] if ALL_EVENTS in events else sorted(set(events), key=events.index)


def _description(text: str | None) -> str | None:
    if text is not None and not text.isprintable():
        raise InvalidRequest("description: must be printable text", param="description")
    return text


async def create(
    conn: Conn, vault: Vault, merchant_id: str, request: EndpointCreate, *, allow_private: bool
) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its secret: the only time the secret is shown."""
    endpoint_id = new_id(WEBHOOK_ENDPOINT)
    secret = new_secret()
    endpoint = await store.insert_endpoint(
        conn,
        id=endpoint_id,
        merchant_id=merchant_id,
        url=_url(request.url, allow_private),
        description=_description(request.description),
        events=_events(request.events),
        enabled=request.enabled,
        secret_ct=vault.encrypt(secret, row_id=endpoint_id),
    )
    return endpoint, secret


async def get(conn: Conn, merchant_id: str, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint:
    endpoint = await store.get_endpoint(conn, merchant_id, endpoint_id, lock=lock)
    if endpoint is None:
        raise NotFound("No such webhook endpoint.", param="id")
    return endpoint


async def retrieve(db: Database, merchant_id: str, endpoint_id: str) -> WebhookEndpoint:
    async with db.connection() as conn:
        return await get(conn, merchant_id, endpoint_id)


async def list_(db: Database, merchant_id: str, *, limit: int, starting_after: str | None) -> Page[WebhookEndpoint]:
    async with db.connection() as conn:
        return await store.list_endpoints(conn, merchant_id, limit=limit, starting_after=starting_after)


async def update(
    conn: Conn, merchant_id: str, endpoint_id: str, request: EndpointUpdate, *, allow_private: bool
) -> WebhookEndpoint:
    current = await get(conn, merchant_id, endpoint_id, lock=True)
    fields: store.EndpointFields = {}
    if request.url is not None:
        fields["url"] = _url(request.url, allow_private)
    if request.events is not None:
        fields["events"] = _events(request.events)
    if "description" in request.model_fields_set:
        fields["description"] = _description(request.description)
    if request.enabled is not None and request.enabled != current.enabled:
        fields["enabled"] = request.enabled
        fields["disabled_reason"] = None
        fields["failing_since"] = None  # re-enabled: a fresh start; disabled by hand: no streak to keep
    if not fields:
        return current
    updated = await store.update_endpoint(conn, endpoint_id, fields)
    if fields.get("enabled") is False:
        await store.stop_pending(conn, endpoint_id, "the endpoint was disabled")
    return updated


async def delete(db: Database, merchant_id: str, endpoint_id: str) -> dict[str, Any]:
    """Its deliveries and their attempts go with it; the events stay."""
    async with db.transaction() as conn:
        deleted = await store.delete_endpoint(conn, merchant_id, endpoint_id)
    if not deleted:
        raise NotFound("No such webhook endpoint.", param="id")
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


async def rotate_secret(
    conn: Conn, vault: Vault, merchant_id: str, endpoint_id: str, *, now: datetime | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new secret, shown once; the current one keeps signing beside it for `SECRET_OVERLAP`. A secret
    rotated out earlier and still in its overlap is dropped: two secrets at most."""
    now = now or datetime.now(UTC)
    current = await get(conn, merchant_id, endpoint_id, lock=True)
    secret = new_secret()
    endpoint = await store.update_endpoint(
        conn,
        endpoint_id,
        {
            "secret_ct": vault.encrypt(secret, row_id=endpoint_id),
            "previous_secret_ct": current.secret_ct,
            "previous_secret_expires": now + SECRET_OVERLAP,
        },
    )
    return endpoint, secret


async def list_deliveries(
    db: Database,
    merchant_id: str,
    endpoint_id: str,
    *,
    limit: int,
    starting_after: str | None,
    status: str | None,
    event: str | None,
) -> Page[DeliveryReport]:
    async with db.connection() as conn:
        await get(conn, merchant_id, endpoint_id)
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidRequest("status: must be one of " + ", ".join(DELIVERY_STATUSES), param="status")
        page = await store.list_deliveries(
            conn, endpoint_id, limit=limit, starting_after=starting_after, status=status, event_id=event
        )
        return Page(await with_attempts(conn, page.rows), page.has_more)


async def with_attempts(conn: Conn, deliveries: list[WebhookDelivery]) -> list[DeliveryReport]:
    attempts = await store.attempts_of(conn, [d.id for d in deliveries])
    return [DeliveryReport(d, attempts[d.id]) for d in deliveries]
