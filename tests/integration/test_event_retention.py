"""Event retention (TENDER_EVENT_RETENTION_DAYS): the worker's housekeeping purges events older than the window
with their finished webhook deliveries and those's attempts, in batches. The next event of an object whose events
went continues its sequence where they left it (event_sequences). Kept: an event whose delivery is still pending,
and one whose delivery is dead-lettered and open (an operator may retry it).

On a database of its own: the purge is global, and the session's database holds every other test's events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ulid import ULID

from tender.services import maintenance
from tender.store import events as event_store
from tender.store.db import Database
from tests.support.databases import fresh_database

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=120)  # past the 90-day window
RECENT = NOW - timedelta(days=10)


def event_id(at: datetime) -> str:
    return f"evt_{ULID.from_timestamp(at.timestamp())}"


@pytest.fixture
async def db(pg_server_url: str) -> AsyncIterator[Database]:
    with fresh_database(pg_server_url, "tender_ret") as url:
        database = Database(url, min_size=1, max_size=2)
        await database.open()
        try:
            async with database.connection() as conn:
                await conn.execute("INSERT INTO merchants (id, name) VALUES ('mer_r', 'Retention')")
                await conn.execute(
                    "INSERT INTO webhook_endpoints (id, merchant_id, url, events, secret_ct)"
                    " VALUES ('we_r', 'mer_r', 'https://shop.example/hook', '{*}', '\\x00')"
                )
            yield database
        finally:
            await database.close()


async def add_event(db: Database, object_id: str, sequence: int, at: datetime, delivery: str | None) -> str:
    """An event of `object_id` made `at`, with a delivery in status `delivery` (and one attempt) if given."""
    eid = event_id(at)
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO events (id, merchant_id, type, object_id, data, sequence, created)"
            " VALUES (%s, 'mer_r', 'payment.updated', %s, '{}', %s, %s)",
            (eid, object_id, sequence, at),
        )
        if delivery is not None:
            did = "whd_" + eid[4:]
            await conn.execute(
                "INSERT INTO webhook_deliveries (id, merchant_id, endpoint_id, event_id, status, next_run_at)"
                " VALUES (%s, 'mer_r', 'we_r', %s, %s, %s)",
                (did, eid, delivery, at if delivery == "pending" else None),
            )
            await conn.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempted, latency_ms, status_code)"
                " VALUES (%s, %s, 5, 200)",
                (did, at),
            )
    return eid


async def rows(db: Database, query: str) -> list[Any]:
    async with db.connection() as conn:
        cur = await conn.execute(query)
        return [tuple(r.values()) for r in await cur.fetchall()]


async def test_old_events_go_with_their_deliveries_and_what_must_stay_stays(db: Database) -> None:
    # pay_a: three old events, delivered: all go.
    a = [await add_event(db, "pay_a", n, OLD + timedelta(minutes=n), "succeeded") for n in (1, 2, 3)]
    # pay_b: an old event still being delivered, then a newer old one: the pending one stays.
    b_pending = await add_event(db, "pay_b", 1, OLD, "pending")
    await add_event(db, "pay_b", 2, OLD + timedelta(minutes=1), "succeeded")
    # pay_c: an old event whose delivery failed into an open dead letter: it stays.
    c_letter = await add_event(db, "pay_c", 1, OLD, "failed")
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO dead_letters (id, kind, object_id, operation, tries)"
            " VALUES ('dl_c', 'webhook_delivery', %s, 'deliver', 12)",
            ("whd_" + c_letter[4:],),
        )
    # pay_d: recent events: inside the window, all stay.
    d = [await add_event(db, "pay_d", n, RECENT + timedelta(minutes=n), "succeeded") for n in (1, 2)]

    removed = await maintenance.purge_events(db, days=90, batch=1, now=NOW)  # one event per batch: the loop too

    assert removed == 4
    kept = await rows(db, "SELECT object_id, sequence FROM events ORDER BY object_id, sequence")
    assert kept == [("pay_b", 1), ("pay_c", 1), ("pay_d", 1), ("pay_d", 2)]
    delivered = {e for (e,) in await rows(db, "SELECT event_id FROM webhook_deliveries")}
    assert delivered == {b_pending, c_letter, *d} and not delivered & set(a)
    # The deleted deliveries' attempts went with them (ON DELETE CASCADE); the others' stay.
    assert await rows(db, "SELECT count(*) FROM webhook_attempts") == [(len(delivered),)]

    # Each object's next event continues its numbering where the purged ones left it.
    async with db.transaction() as conn:
        new = await event_store.record(
            conn,
            [("mer_r", "payment.refunded", "pay_a", {}), ("mer_r", "payment.refunded", "pay_b", {})],
            [],
        )
    numbered = await rows(db, f"SELECT object_id, sequence FROM events WHERE id IN ('{new[0]}', '{new[1]}')")
    assert sorted(numbered) == [("pay_a", 4), ("pay_b", 3)]


async def test_nothing_inside_the_window_goes(db: Database) -> None:
    for n in (1, 2, 3):
        await add_event(db, "pay_e", n, NOW - timedelta(days=89, minutes=n), "succeeded")
    assert await maintenance.purge_events(db, days=90, now=NOW) == 0
    assert await rows(db, "SELECT count(*) FROM events") == [(3,)]


async def test_an_event_being_redelivered_is_left_for_the_next_round(db: Database) -> None:
    first = await add_event(db, "pay_f", 1, OLD, "succeeded")
    async with db.transaction() as redelivery:  # a redelivery holds its event (services/events.redeliver)
        assert await event_store.get(redelivery, "mer_r", first, share=True) is not None
        assert await maintenance.purge_events(db, days=90, now=NOW) == 0
    assert await maintenance.purge_events(db, days=90, now=NOW) == 1
    assert await rows(db, "SELECT count(*) FROM events") == [(0,)]
