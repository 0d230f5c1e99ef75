"""Test clocks: simulated time for a merchant's tests and demos.

A customer created on a clock lives on its `frozen_time`, and so do its subscriptions, invoices and their
payments' payables. Advancing a clock moves `frozen_time` forward (never back: a 400) and runs everything
that falls due up to it (services/billing.run_due_for_clock), answering once done: status `advancing`
while it runs, `ready` after. Advances of one clock are serialized (store/test_clocks.take_advance_lock):
a second waits for the first, then finds the time already reached and does nothing again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tender.domain.ids import TEST_CLOCK, new_id
from tender.domain.recurring import MAX_CLOCK_NAME_LENGTH, TestClock, TestClockStatus
from tender.errors import InvalidRequest, NotFound
from tender.services import billing
from tender.store import test_clocks as store
from tender.store.db import Conn, Database, Page

# Far enough for any test, near enough that a century of periods after it stays within datetime's range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
TIME_DESCRIPTION = "An ISO 8601 time with its offset (e.g. 2027-01-31T12:00:00Z), or Unix seconds."

FrozenTime = Annotated[str, Field(max_length=40)] | int


class TestClockCreate(BaseModel):
    __test__ = False
    model_config = ConfigDict(strict=True, extra="forbid")

    frozen_time: FrozenTime = Field(description=TIME_DESCRIPTION)
    name: str | None = Field(default=None, max_length=MAX_CLOCK_NAME_LENGTH, description="At most 300 characters.")


class TestClockAdvance(BaseModel):
    __test__ = False
    model_config = ConfigDict(strict=True, extra="forbid")

    frozen_time: FrozenTime = Field(description=TIME_DESCRIPTION + " Not earlier than the clock's time.")


def parse_time(value: str | int, param: str = "frozen_time") -> datetime:
    """An aware time from an ISO 8601 string with an offset, or from Unix seconds; a 400 naming `param`."""
    try:
        moment = datetime.fromtimestamp(value, UTC) if isinstance(value, int) else datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError):
        raise InvalidRequest(f"{param}: must be an ISO 8601 time or Unix seconds", param=param) from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{param}: give the time's offset (e.g. Z for UTC)", param=param)
    if not EARLIEST <= moment < LATEST:
        raise InvalidRequest(f"{param}: must be from 1970 to 2199", param=param)
    return moment.astimezone(UTC)


def _name(value: str | None) -> str | None:
    if value is not None and not value.isprintable():
        raise InvalidRequest("name: must be printable text", param="name")
    return value


async def create(conn: Conn, merchant_id: str, request: TestClockCreate, *, now: datetime | None = None) -> TestClock:
    now = now or datetime.now(UTC)
    clock = TestClock(
        id=new_id(TEST_CLOCK),
        merchant_id=merchant_id,
        name=_name(request.name),
        frozen_time=parse_time(request.frozen_time),
        status=TestClockStatus.READY,
        created=now,
        updated=now,
    )
    await store.insert(conn, clock)
    return clock


async def get(conn: Conn, merchant_id: str, clock_id: str, *, lock: bool = False) -> TestClock:
    clock = await store.get(conn, merchant_id, clock_id, lock=lock)
    if clock is None:
        raise NotFound("No such test clock.", param="id")
    return clock


async def retrieve(db: Database, merchant_id: str, clock_id: str) -> TestClock:
    async with db.connection() as conn:
        return await get(conn, merchant_id, clock_id)


async def list_(db: Database, merchant_id: str, *, limit: int, starting_after: str | None) -> Page[TestClock]:
    async with db.connection() as conn:
        return await store.list_(conn, merchant_id, limit=limit, starting_after=starting_after)


async def advance(
    db: Database,
    merchant_id: str,
    clock_id: str,
    request: TestClockAdvance,
    *,
    setup: billing.BillingSetup | None = None,
) -> TestClock:
    """Move the clock to `frozen_time` and run what fell due (`setup`: the deployment's time zone and
    processors); the clock as it is once done: `ready`, or still `advancing` if billing left work for later
    (a payment that did not end in time, e.g. no worker running).

    The same time again, on a clock that is ready, runs nothing (a retried advance). A clock left `advancing`
    (its advance died midway, or left work) is run again to that time: the billing hook does nothing twice."""
    target = parse_time(request.frozen_time)
    async with db.transaction() as lock_conn:
        # Held until the end: another advance of this clock waits here (it cannot update the row we update
        # below from other transactions, so the lock is not the row's).
        await get(lock_conn, merchant_id, clock_id)
        await store.take_advance_lock(lock_conn, clock_id)
        async with db.transaction() as conn:
            clock = await get(conn, merchant_id, clock_id, lock=True)
            if target < clock.frozen_time:
                raise InvalidRequest(
                    "frozen_time: a test clock never goes backwards; give a time not earlier than its frozen_time",
                    param="frozen_time",
                )
            if target == clock.frozen_time and clock.status is TestClockStatus.READY:
                return clock
            clock = await store.set_state(conn, clock.id, frozen_time=target, status=TestClockStatus.ADVANCING)
        done = await billing.run_due_for_clock(db, clock, setup=setup)
        status = TestClockStatus.READY if done else TestClockStatus.ADVANCING
        async with db.transaction() as conn:
            return await store.set_state(conn, clock.id, frozen_time=target, status=status)
