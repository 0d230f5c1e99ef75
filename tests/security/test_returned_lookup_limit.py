"""Issue 11, finding 15: "`?returned=1` on the hosted page triggers processor look-ups without limit"."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.api import auth
from tests.support.checkout import FORM, card_form, new_session, page_path
from tests.support.payments import authorizer, drain

pytestmark = pytest.mark.integration

THREE_DS = "4000002760003184"


@asynccontextmanager
async def another_api_process(container: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second API app: nothing it remembers in memory is shared with the first."""
    from tender.api.app import create_app

    app = create_app(dataclasses.replace(container))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tender.test") as client:
        yield client


async def next_run_at(container: Any, payment_id: str) -> datetime:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT next_run_at FROM payments WHERE id = %s", (payment_id,))
        row = await cur.fetchone()
    value: datetime = row["next_run_at"]
    return value


async def postpone(container: Any, payment_id: str) -> datetime:
    """As if the next scheduled look-up were an hour away; returns that time."""
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "UPDATE payments SET next_run_at = now() + interval '1 hour' WHERE id = %s RETURNING next_run_at",
            (payment_id,),
        )
        row = await cur.fetchone()
    value: datetime = row["next_run_at"]
    return value


async def test_coming_back_asks_the_processor_at_most_once_per_interval(
    api: Any, container: Any, merchant: Any
) -> None:
    session = await new_session(api, merchant)
    path = page_path(session)
    assert (await api.post(path + "/pay", content=card_form(THREE_DS), headers=FORM)).status_code == 303
    await drain(authorizer(container))
    [payment] = (await api.get("/v1/payments", headers=auth(merchant.secret_key))).json()["data"]
    assert payment["status"] == "requires_action"
    pid = payment["id"]

    later = await postpone(container, pid)
    first = await api.get(path, params={"returned": "1"})
    assert first.status_code == 200 and "Payment processing" in first.text
    assert await next_run_at(container, pid) < later  # the first return asks at once

    later = await postpone(container, pid)
    async with another_api_process(container) as other:
        for client in (api, other, api):  # reloads, on any API process
            again = await client.get(path, params={"returned": "1"})
            assert again.status_code == 200 and "Payment processing" in again.text  # the current state, no 429
        # Neither the page's polling nor its plain view asks the processor anything.
        assert (await other.get(path + "/status")).json()["payment_status"] == "requires_action"
        assert (await other.get(path)).status_code == 200
    assert await next_run_at(container, pid) == later  # no look-up was asked for

    async with container.db.connection() as conn:  # the interval (10 s by default) has passed
        await conn.execute(
            "UPDATE payments SET shopper_lookup_at = shopper_lookup_at - interval '11 s' WHERE id = %s", (pid,)
        )
    await api.get(path, params={"returned": "1"})
    assert await next_run_at(container, pid) < later
