"""SQL for webhook endpoints, their deliveries (due rows of the delivery pump) and the attempts made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol, TypedDict

from psycopg.rows import class_row

from tender.domain.ids import WEBHOOK_DELIVERY, new_id
from tender.domain.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tender.domain.webhooks import subscribes
from tender.store import notifications
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_all, fetch_one

ENDPOINT_COLUMNS = (
    "id, merchant_id, url, description, events, enabled, disabled_reason, secret_ct, previous_secret_ct,"
    " previous_secret_expires, failing_since, created, updated"
)
DELIVERY_COLUMNS = (
    "id, merchant_id, endpoint_id, event_id, status, tries, next_run_at, retry_from, attempts,"
    " last_status_code, last_error, last_attempt_at, created, updated"
)
_EVENT_TYPE = "(SELECT type FROM events e WHERE e.id = event_id) AS event_type"


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery as the webhook pump claims it (store/claims.py): what sending it and giving up need."""

    id: str
    tries: int  # claims since created or redelivered, this one included
    merchant_id: str
    endpoint_id: str
    event_id: str
    retry_from: datetime  # the retry window starts here
    attempts: int  # requests sent, ever


CLAIM_COLUMNS = [f.name for f in fields(ClaimedDelivery) if f.name not in ("id", "tries")]  # claim adds those


class EndpointFields(TypedDict, total=False):
    """The columns an update of an endpoint may set: only those given are written."""

    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    secret_ct: bytes
    previous_secret_ct: bytes | None
    previous_secret_expires: datetime | None


class DeliveryResult(Protocol):
    """What the delivery pump knows of one delivery after trying it (services/webhook_delivery.py)."""

    id: str
    status: DeliveryStatus
    next_run_at: datetime | None  # when to try again (pending), else None
    attempted: datetime | None  # when a request was sent; None: nothing was sent
    status_code: int | None
    latency_ms: int
    error: str | None


# -- endpoints -----------------------------------------------------------------------------------------


async def insert_endpoint(
    conn: Conn,
    *,
    id: str,
    merchant_id: str,
    url: str,
    description: str | None,
    events: list[str],
    enabled: bool,
    secret_ct: bytes,
) -> WebhookEndpoint:
    created = await fetch_one(
        conn,
        WebhookEndpoint,
        "INSERT INTO webhook_endpoints (id, merchant_id, url, description, events, enabled, secret_ct)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {ENDPOINT_COLUMNS}",
        (id, merchant_id, url, description, events, enabled, secret_ct),
    )
    assert created is not None
    return created


async def get_endpoint(conn: Conn, merchant_id: str, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint | None:
    return await fetch_one(
        conn,
        WebhookEndpoint,
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = %s AND merchant_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (endpoint_id, merchant_id),
    )


async def get_endpoints(conn: Conn, ids: Sequence[str]) -> dict[str, WebhookEndpoint]:
    found = await fetch_all(
        conn, WebhookEndpoint, f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ANY(%s)", (list(ids),)
    )
    return {endpoint.id: endpoint for endpoint in found}


async def list_endpoints(
    conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None
) -> Page[WebhookEndpoint]:
    return await newest_first(
        conn, "webhook_endpoints", ENDPOINT_COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id}, row_factory=class_row(WebhookEndpoint),
    )  # fmt: skip


async def update_endpoint(conn: Conn, endpoint_id: str, fields: EndpointFields) -> WebhookEndpoint:
    """Set the given columns (names from our own code, never from a request) and return the endpoint."""
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    row = await fetch_one(
        conn,
        WebhookEndpoint,
        f"UPDATE webhook_endpoints SET {assignments}, updated = now() WHERE id = %(endpoint_id)s"
        f" RETURNING {ENDPOINT_COLUMNS}",
        {**fields, "endpoint_id": endpoint_id},
    )
    assert row is not None
    return row


async def delete_endpoint(conn: Conn, merchant_id: str, endpoint_id: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM webhook_endpoints WHERE id = %s AND merchant_id = %s RETURNING id", (endpoint_id, merchant_id)
    )
    return await cur.fetchone() is not None


async def stop_pending(conn: Conn, endpoint_id: str, reason: str) -> int:
    """A disabled endpoint gets nothing more: its pending deliveries fail (an event can be redelivered)."""
    cur = await conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', next_run_at = NULL, lease_token = NULL,"
        " last_error = %s, updated = now() WHERE endpoint_id = %s AND status = 'pending'",
        (reason, endpoint_id),
    )
    return cur.rowcount


# -- deliveries ----------------------------------------------------------------------------------------


# The enabled endpoints of the merchants in a text[] parameter (fan_out's; store/events.py sends it with another read).
ENABLED_ENDPOINTS = "SELECT id, merchant_id, events FROM webhook_endpoints WHERE merchant_id = ANY(%s) AND enabled"


async def fan_out(
    conn: Conn, events: Sequence[tuple[str, str, str]], endpoints: Sequence[Mapping[str, Any]] | None = None
) -> int:
    """One pending delivery per (event, enabled endpoint of its merchant listening to its type), due now.
    `events` are (event_id, merchant_id, type); `endpoints`: the enabled endpoints of at least their merchants,
    read in this transaction (default: read here). Returns how many deliveries were made."""
    if endpoints is None:
        merchants = sorted({merchant_id for _, merchant_id, _ in events})
        cur = await conn.execute(ENABLED_ENDPOINTS, (merchants,))
        endpoints = await cur.fetchall()
    if not endpoints:
        return 0
    rows = [
        (new_id(WEBHOOK_DELIVERY), merchant_id, endpoint["id"], event_id)
        for event_id, merchant_id, type_ in events
        for endpoint in endpoints
        if endpoint["merchant_id"] == merchant_id and subscribes(endpoint["events"], type_)
    ]
    return await insert_deliveries(conn, rows)


# unnest's arrays go in binary (%b): cheaper to dump than text arrays (store/payments.py, issue 16).
async def insert_deliveries(conn: Conn, rows: Sequence[tuple[str, str, str, str]]) -> int:
    """Insert (id, merchant_id, endpoint_id, event_id) deliveries, due now; an existing pair is left alone."""
    if not rows:
        return 0
    ids, merchants, endpoints, events = (list(column) for column in zip(*rows, strict=True))
    cur = await conn.execute(
        "INSERT INTO webhook_deliveries (id, merchant_id, endpoint_id, event_id, next_run_at)"
        " SELECT d.id, d.merchant_id, d.endpoint_id, d.event_id, now()"
        " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS d (id, merchant_id, endpoint_id, event_id)"
        " ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        (ids, merchants, endpoints, events),
    )
    return cur.rowcount


async def redeliver(conn: Conn, event_id: str, endpoint_ids: Sequence[str]) -> list[WebhookDelivery]:
    """Make the event's deliveries to these endpoints due now, with fresh tries and retry window (made
    where missing). Returns the deliveries."""
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_run_at = now(), lease_token = NULL, tries = 0,"
        " retry_from = now(), updated = now() WHERE event_id = %s AND endpoint_id = ANY(%s)",
        (event_id, list(endpoint_ids)),
    )
    cur = await conn.execute("SELECT merchant_id FROM events WHERE id = %s", (event_id,))
    event = await cur.fetchone()
    assert event is not None
    await insert_deliveries(conn, [(new_id(WEBHOOK_DELIVERY), event["merchant_id"], e, event_id) for e in endpoint_ids])
    await notifications.announce_work(conn, "webhook_deliveries")  # an UPDATE fires no trigger
    return await fetch_all(
        conn,
        WebhookDelivery,
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE event_id = %s AND endpoint_id = ANY(%s) ORDER BY id",
        (event_id, list(endpoint_ids)),
    )


async def schedule_now(conn: Conn, delivery_id: str) -> bool:
    """An operator's retry of a failed delivery: due now, fresh tries and window. False if it succeeded."""
    cur = await conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_run_at = now(), lease_token = NULL, tries = 0,"
        " retry_from = now(), updated = now() WHERE id = %s AND status <> 'succeeded' RETURNING id",
        (delivery_id,),
    )
    found = await cur.fetchone() is not None
    if found:
        await notifications.announce_work(conn, "webhook_deliveries")
    return found


async def postpone(conn: Conn, token: Any, ids: Sequence[str], delay: timedelta) -> None:
    """Put claimed rows back unsent, due after `delay`, the claim not counted as a try."""
    if ids:
        await conn.execute(
            "UPDATE webhook_deliveries SET next_run_at = now() + %s, lease_token = NULL, tries = greatest(tries - 1, 0)"
            " WHERE id = ANY(%s) AND lease_token = %s",
            (delay, list(ids), token),
        )


async def write_results(conn: Conn, token: Any, results: Sequence[DeliveryResult]) -> set[str]:
    """Write each delivery's outcome where our lease still holds; returns the ids written."""
    if not results:
        return set()
    cur = await conn.execute(
        "UPDATE webhook_deliveries d SET status = r.status, next_run_at = r.next_run_at, lease_token = NULL,"
        " attempts = d.attempts + r.sent, last_status_code = coalesce(r.status_code, d.last_status_code),"
        " last_error = r.error, last_attempt_at = coalesce(r.attempted, d.last_attempt_at), updated = now()"
        " FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::int[], %b::int[], %b::text[],"
        "             %b::timestamptz[]) AS r (id, status, next_run_at, sent, status_code, error, attempted)"
        " WHERE d.id = r.id AND d.lease_token = %s RETURNING d.id",
        (
            [r.id for r in results],
            [r.status for r in results],
            [r.next_run_at for r in results],
            [1 if r.attempted is not None else 0 for r in results],
            [r.status_code for r in results],
            [r.error for r in results],
            [r.attempted for r in results],
            token,
        ),
    )
    return {row["id"] for row in await cur.fetchall()}


async def insert_attempts(conn: Conn, attempts: Sequence[DeliveryResult]) -> None:
    """One attempt row per result (each one that sent a request)."""
    if not attempts:
        return
    await conn.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempted, status_code, latency_ms, error)"
        " SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::int[], %b::int[], %b::text[])",
        (
            [a.id for a in attempts],
            [a.attempted for a in attempts],
            [a.status_code for a in attempts],
            [a.latency_ms for a in attempts],
            [a.error for a in attempts],
        ),
    )


async def note_endpoint_health(conn: Conn, succeeded: Sequence[str], failed: Sequence[str], now: datetime) -> None:
    """A success clears an endpoint's failing streak; a failure starts one if none is running."""
    if succeeded:
        await conn.execute(
            "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ANY(%s) AND failing_since IS NOT NULL",
            (sorted(succeeded),),
        )
    still_failing = sorted(set(failed) - set(succeeded))
    if still_failing:
        await conn.execute(
            "UPDATE webhook_endpoints SET failing_since = %s WHERE id = ANY(%s) AND failing_since IS NULL",
            (now, still_failing),
        )


async def failing_since_before(conn: Conn, ids: Sequence[str], cutoff: datetime) -> list[WebhookEndpoint]:
    """Enabled endpoints among `ids` failing since before `cutoff`, locked for disabling."""
    return await fetch_all(
        conn,
        WebhookEndpoint,
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ANY(%s) AND enabled"
        " AND failing_since < %s ORDER BY id FOR UPDATE",
        (sorted(ids), cutoff),
    )


async def list_deliveries(
    conn: Conn,
    endpoint_id: str,
    *,
    limit: int,
    starting_after: str | None,
    status: str | None,
    event_id: str | None,
) -> Page[WebhookDelivery]:
    return await newest_first(
        conn, "webhook_deliveries", f"{DELIVERY_COLUMNS}, {_EVENT_TYPE}",
        limit=limit, starting_after=starting_after,
        equal={"endpoint_id": endpoint_id, "status": status, "event_id": event_id},
        row_factory=class_row(WebhookDelivery),
    )  # fmt: skip


async def attempts_of(conn: Conn, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
    """Every attempt of each delivery, oldest first."""
    found: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    query = (
        "SELECT delivery_id, attempted, status_code, latency_ms, error FROM webhook_attempts"
        " WHERE delivery_id = ANY(%s) ORDER BY id"
    )
    for attempt in await fetch_all(conn, WebhookAttempt, query, (list(delivery_ids),)):
        found[attempt.delivery_id].append(attempt)
    return found


async def delete_attempts_older_than(conn: Conn, days: int) -> int:
    cur = await conn.execute(
        "DELETE FROM webhook_attempts WHERE attempted < now() - make_interval(days => %s)", (days,)
    )
    return cur.rowcount
