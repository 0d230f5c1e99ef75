"""Finding 16 (last nit): "a second request with an in-flight Idempotency-Key waits up to 10 s holding a pool
connection before its 409"."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg
import pytest

from tests.support.api import auth, card_payment

pytestmark = pytest.mark.integration


async def wait_for_a_blocked_payment_insert(conn: psycopg.AsyncConnection[Any]) -> None:
    """Until the first request is inside its work: its key row written, its payment INSERT waiting on our lock."""
    for _ in range(250):
        await conn.execute("SELECT pg_stat_clear_snapshot()")  # the view is a snapshot per transaction
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO payments%'"
        )
        row = await cur.fetchone()
        if row is not None and row[0] > 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the first request never reached its payment INSERT")


async def test_a_duplicate_of_a_running_request_is_409_at_once_and_replays_after(
    api: Any, container: Any, merchant: Any, database_url: str
) -> None:
    headers = {**auth(merchant.secret_key), "Idempotency-Key": f"slow-{uuid.uuid4().hex[:8]}"}
    body = card_payment(reference=f"slow-{uuid.uuid4().hex[:8]}")
    # Hold the first request inside its transaction: a lock that makes its payment INSERT wait.
    blocker = await psycopg.AsyncConnection.connect(database_url)
    try:
        await blocker.execute("LOCK TABLE payments IN SHARE ROW EXCLUSIVE MODE")
        first = asyncio.create_task(api.post("/v1/payments", json=body, headers=headers))
        await wait_for_a_blocked_payment_insert(blocker)

        started = time.monotonic()
        second = await api.post("/v1/payments", json=body, headers=headers)
        elapsed = time.monotonic() - started
        assert second.status_code == 409, second.text
        assert second.json()["error"]["code"] == "idempotency_key_in_use"
        # At once: well under the 10 s lock_timeout it would wait out behind the first (and a loaded CI machine).
        assert elapsed < 5, f"the 409 took {elapsed:.2f} s"
        assert not first.done()
    finally:
        await blocker.rollback()
        await blocker.close()

    done = await first
    assert done.status_code == 202, done.text
    assert "idempotent-replayed" not in done.headers
    replay = await api.post("/v1/payments", json=body, headers=headers)
    assert replay.status_code == 202
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == done.json()["id"]
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM payments WHERE reference = %s", (body["reference"],))
        assert (await cur.fetchone())["n"] == 1


async def test_a_duplicate_after_a_failed_first_runs_as_first(api: Any, container: Any, merchant: Any) -> None:
    """The in-flight guard is released with the first request's transaction, also when it rolls back."""
    headers = {**auth(merchant.secret_key), "Idempotency-Key": f"fail-{uuid.uuid4().hex[:8]}"}
    bad = card_payment("4242424242424241")
    assert (await api.post("/v1/payments", json=bad, headers=headers)).status_code == 400
    good = await api.post("/v1/payments", json=card_payment(), headers=headers)
    assert good.status_code == 202, good.text
    assert "idempotent-replayed" not in good.headers
