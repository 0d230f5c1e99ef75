"""Test clocks (issue 15): created at a frozen time, advanced forward only (an earlier time is a 400 naming
frozen_time, the same time again runs nothing), answered `ready` once done; advances of one clock serialized."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from tender.domain.recurring import TestClockStatus
from tender.store import test_clocks as clock_store
from tests.support.api import auth

pytestmark = pytest.mark.integration

START = "2027-01-31T12:00:00Z"


async def new_clock(api: Any, merchant: Any, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/test_clocks", json={"frozen_time": START, **body}, headers=auth(merchant.secret_key))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def advance(api: Any, merchant: Any, clock_id: str, to: Any) -> Any:
    return await api.post(
        f"/v1/test_clocks/{clock_id}/advance", json={"frozen_time": to}, headers=auth(merchant.secret_key)
    )


async def test_a_clock_is_created_read_and_listed(api: Any, merchant: Any) -> None:
    clock = await new_clock(api, merchant, name="year of renewals")
    assert clock["id"].startswith("clock_") and clock["object"] == "test_clock"
    assert (clock["frozen_time"], clock["status"], clock["name"]) == (
        "2027-01-31T12:00:00.000Z",
        "ready",
        "year of renewals",
    )
    got = await api.get(f"/v1/test_clocks/{clock['id']}", headers=auth(merchant.secret_key))
    assert got.status_code == 200 and got.json() == clock
    unix = await api.post("/v1/test_clocks", json={"frozen_time": 1801396800}, headers=auth(merchant.secret_key))
    assert unix.status_code == 201 and unix.json()["frozen_time"] == "2027-01-31T12:00:00.000Z"
    listed = (await api.get("/v1/test_clocks", params={"limit": 1}, headers=auth(merchant.secret_key))).json()
    assert [c["id"] for c in listed["data"]] == [unix.json()["id"]] and listed["has_more"] is True


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "frozen_time"),
        ({"frozen_time": "yesterday"}, "frozen_time"),
        ({"frozen_time": "2027-01-31T12:00:00"}, "frozen_time"),  # no offset
        ({"frozen_time": "1969-12-31T00:00:00Z"}, "frozen_time"),
        ({"frozen_time": 10**12}, "frozen_time"),
        ({"frozen_time": "2" * 41}, "frozen_time"),
        ({"frozen_time": START, "name": "n" * 301}, "name"),
        ({"frozen_time": START, "speed": 2}, "speed"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(api: Any, merchant: Any, body: dict[str, Any], param: str) -> None:
    r = await api.post("/v1/test_clocks", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_an_advance_moves_forward_only_and_the_same_time_is_a_no_op(api: Any, merchant: Any) -> None:
    clock = await new_clock(api, merchant)
    r = await advance(api, merchant, clock["id"], "2027-02-28T12:00:00+00:00")
    assert r.status_code == 200, r.text
    assert (r.json()["frozen_time"], r.json()["status"]) == ("2027-02-28T12:00:00.000Z", "ready")
    moved = r.json()
    again = await advance(api, merchant, clock["id"], "2027-02-28T09:00:00-03:00")  # the same instant
    assert again.status_code == 200 and again.json() == moved  # nothing ran, not even `updated` moved
    back = await advance(api, merchant, clock["id"], "2027-02-01T00:00:00Z")
    assert back.status_code == 400 and back.json()["error"]["param"] == "frozen_time"
    now = (await api.get(f"/v1/test_clocks/{clock['id']}", headers=auth(merchant.secret_key))).json()
    assert now["frozen_time"] == "2027-02-28T12:00:00.000Z"


async def test_an_unknown_clock_is_a_404(api: Any, merchant: Any, container: Any) -> None:
    from tender.services.merchants import create_merchant

    clock = await new_clock(api, merchant)
    other = await create_merchant(container.db, "Other shop")
    r = await api.post(
        f"/v1/test_clocks/{clock['id']}/advance", json={"frozen_time": "2028-01-01T00:00:00Z"},
        headers=auth(other.secret_key),
    )  # fmt: skip
    assert r.status_code == 404
    assert (await advance(api, merchant, "clock_nope", "2028-01-01T00:00:00Z")).status_code == 404
    assert (await api.get(f"/v1/test_clocks/{clock['id']}", headers=auth(other.secret_key))).status_code == 404


async def test_advances_of_one_clock_wait_for_each_other(api: Any, container: Any, merchant: Any) -> None:
    clock = await new_clock(api, merchant)
    # Someone holds the clock's advance lock (as a running advance does): a new advance waits for it.
    async with container.db.transaction() as conn:
        await clock_store.take_advance_lock(conn, clock["id"])
        waiting = asyncio.create_task(advance(api, merchant, clock["id"], "2027-03-31T12:00:00Z"))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        still = (await api.get(f"/v1/test_clocks/{clock['id']}", headers=auth(merchant.secret_key))).json()
        assert still["frozen_time"] == "2027-01-31T12:00:00.000Z"
    r = await asyncio.wait_for(waiting, 10)
    assert r.status_code == 200 and r.json()["frozen_time"] == "2027-03-31T12:00:00.000Z"


async def test_concurrent_advances_end_at_the_latest_time_without_errors(api: Any, merchant: Any) -> None:
    clock = await new_clock(api, merchant)
    times = ["2027-02-28T12:00:00Z", "2027-03-31T12:00:00Z", "2027-03-31T12:00:00Z", "2027-02-10T00:00:00Z"]
    answers = await asyncio.gather(*(advance(api, merchant, clock["id"], t) for t in times))
    # Each ran after the one before it ended: a later one got a 400 only for going backwards.
    assert all(r.status_code in (200, 400) for r in answers), [r.text for r in answers]
    assert all(r.json()["error"]["param"] == "frozen_time" for r in answers if r.status_code == 400)
    final = (await api.get(f"/v1/test_clocks/{clock['id']}", headers=auth(merchant.secret_key))).json()
    assert (final["frozen_time"], final["status"]) == ("2027-03-31T12:00:00.000Z", "ready")


async def test_a_clock_left_advancing_is_run_again_to_its_time(api: Any, container: Any, merchant: Any) -> None:
    """An advance that died midway left `advancing`: the same time again runs it to the end (ready)."""
    clock = await new_clock(api, merchant)
    async with container.db.transaction() as conn:
        await clock_store.set_state(
            conn, clock["id"], frozen_time=datetime(2027, 2, 1, tzinfo=UTC), status=TestClockStatus.ADVANCING
        )
    r = await advance(api, merchant, clock["id"], "2027-02-01T00:00:00Z")
    assert r.status_code == 200 and r.json()["status"] == "ready"
