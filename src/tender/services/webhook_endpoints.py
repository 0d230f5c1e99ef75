"""Webhook endpoints: where a merchant wants its events, which ones, and the secret that signs them.

The secret is shown once (on create and on rotation) and kept encrypted by the vault key, because it must
be read back to sign. Rotating keeps the old secret signing beside the new one for 24 hours, so a merchant
can deploy the new one without losing a delivery (Standard Webhooks receivers accept any valid signature).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tender.domain.ids import WEBHOOK_ENDPOINT, new_id
from tender.domain.webhooks import ALL_EVENTS, EVENT_TYPES, new_secret
from tender.errors import InvalidRequest, NotFound
from tender.services.objects import iso
from tender.services.url_guard import MAX_URL_LENGTH, BlockedURL, check_url
from tender.store import webhooks as store
from tender.store.db import Conn
from tender.vault import Vault

SECRET_OVERLAP = timedelta(hours=24)
MAX_DESCRIPTION_LENGTH = 500
# Event types are at most 40 characters and fewer than 64 exist: a longer list or name cannot be valid.
EventList = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)]
EVENTS_DESCRIPTION = 'Event types to send (at most 64), or ["*"] for all.'
DELIVERY_STATUSES = ("pending", "succeeded", "failed")


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


def endpoint_object(row: Mapping[str, Any], *, secret: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": row["id"],
        "object": "webhook_endpoint",
        "url": row["url"],
        "description": row["description"],
        "events": list(row["events"]),
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
    }
    if secret is not None:
        obj["secret"] = secret
    return obj


def delivery_object(row: Mapping[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook_delivery",
        "endpoint": row["endpoint_id"],
        "event": row["event_id"],
        "event_type": row.get("event_type"),
        "status": row["status"],
        "attempts": [
            {
                "created": iso(a["attempted"]),
                "status_code": a["status_code"],
                "latency_ms": a["latency_ms"],
                "error": a["error"],
            }
            for a in attempts
        ],
        "next_attempt": iso(row["next_run_at"]) if row["status"] == "pending" and row["next_run_at"] else None,
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
    }


def _url(url: str, allow_private: bool) -> str:
    try:
        return str(check_url(url, allow_private=allow_private))
    except BlockedURL as exc:
        raise InvalidRequest(f"url: {exc}", param="url", code="url_invalid") from None


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
) -> dict[str, Any]:
    """The new endpoint's object, with its secret: the only time the secret is shown."""
    endpoint_id = new_id(WEBHOOK_ENDPOINT)
    secret = new_secret()
    row = await store.insert_endpoint(
        conn,
        {
            "id": endpoint_id,
            "merchant_id": merchant_id,
            "url": _url(request.url, allow_private),
            "description": _description(request.description),
            "events": _events(request.events),
            "enabled": request.enabled,
            "secret_ct": vault.encrypt(secret, row_id=endpoint_id),
        },
    )
    return endpoint_object(row, secret=secret)


async def _get(conn: Conn, merchant_id: str, endpoint_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = await store.get_endpoint(conn, merchant_id, endpoint_id, lock=lock)
    if row is None:
        raise NotFound("No such webhook endpoint.", param="id")
    return row


async def get(conn: Conn, merchant_id: str, endpoint_id: str) -> dict[str, Any]:
    return endpoint_object(await _get(conn, merchant_id, endpoint_id))


async def list_(
    conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    page = await store.list_endpoints(conn, merchant_id, limit=limit, starting_after=starting_after)
    return [endpoint_object(r) for r in page.rows], page.has_more


async def update(
    conn: Conn, merchant_id: str, endpoint_id: str, request: EndpointUpdate, *, allow_private: bool
) -> dict[str, Any]:
    current = await _get(conn, merchant_id, endpoint_id, lock=True)
    fields: dict[str, Any] = {}
    if request.url is not None:
        fields["url"] = _url(request.url, allow_private)
    if request.events is not None:
        fields["events"] = _events(request.events)
    if "description" in request.model_fields_set:
        fields["description"] = _description(request.description)
    if request.enabled is not None and request.enabled != current["enabled"]:
        fields["enabled"] = request.enabled
        fields["disabled_reason"] = None
        fields["failing_since"] = None  # re-enabled: a fresh start; disabled by hand: no streak to keep
    if not fields:
        return endpoint_object(current)
    row = await store.update_endpoint(conn, endpoint_id, fields)
    if fields.get("enabled") is False:
        await store.stop_pending(conn, endpoint_id, "the endpoint was disabled")
    return endpoint_object(row)


async def delete(conn: Conn, merchant_id: str, endpoint_id: str) -> dict[str, Any]:
    """Its deliveries and their attempts go with it; the events stay."""
    if not await store.delete_endpoint(conn, merchant_id, endpoint_id):
        raise NotFound("No such webhook endpoint.", param="id")
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


async def rotate_secret(
    conn: Conn, vault: Vault, merchant_id: str, endpoint_id: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """A new secret, shown once; the current one keeps signing beside it for `SECRET_OVERLAP`. A secret
    rotated out earlier and still in its overlap is dropped: two secrets at most."""
    now = now or datetime.now(UTC)
    current = await _get(conn, merchant_id, endpoint_id, lock=True)
    secret = new_secret()
    row = await store.update_endpoint(
        conn,
        endpoint_id,
        {
            "secret_ct": vault.encrypt(secret, row_id=endpoint_id),
            "previous_secret_ct": current["secret_ct"],
            "previous_secret_expires": now + SECRET_OVERLAP,
        },
    )
    return endpoint_object(row, secret=secret)


async def list_deliveries(
    conn: Conn,
    merchant_id: str,
    endpoint_id: str,
    *,
    limit: int,
    starting_after: str | None,
    status: str | None,
    event: str | None,
) -> tuple[list[dict[str, Any]], bool]:
    await _get(conn, merchant_id, endpoint_id)
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidRequest("status: must be one of " + ", ".join(DELIVERY_STATUSES), param="status")
    rows, has_more = await store.list_deliveries(
        conn, endpoint_id, limit=limit, starting_after=starting_after, status=status, event_id=event
    )
    attempts = await store.attempts_of(conn, [r["id"] for r in rows])
    return [delivery_object(r, attempts[r["id"]]) for r in rows], has_more
