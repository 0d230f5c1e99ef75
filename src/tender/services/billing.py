"""Subscriptions' billing: renewals, dunning, trial ends (issue 15, helper S2 fills this module in and owns it).

S1 left the two hooks below as stubs that do nothing, so the test clock's advance and a customer's deletion
can call them before the billing work exists.
"""

from __future__ import annotations

from tender.domain.recurring import Customer, TestClock
from tender.store.db import Conn, Database


async def run_due_for_clock(db: Database, clock: TestClock) -> None:
    """Run everything on `clock` that falls due up to its `frozen_time` (renewals, dunning retries, trial
    ends), and return once done. Called by services/test_clocks.advance after it committed the new
    frozen_time with status `advancing` and while it holds the clock's advance lock (so no other advance of
    this clock runs meanwhile); it sets the status back to `ready` afterwards. May be called again with the
    same frozen_time (a retried advance): must not do anything twice. S2 fills it in."""
    del db, clock


async def on_customer_deleted(conn: Conn, customer: Customer) -> None:
    """A customer was just deleted, in `conn`'s transaction: cancel its subscriptions (Stripe cancels them at
    once). S2 fills it in."""
    del conn, customer
