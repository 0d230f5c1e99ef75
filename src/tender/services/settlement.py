"""Settlement: payables whose payment date has come move from `waiting_funds` to `paid`, grouped into one
settlement per merchant, currency and day, with the money moved from pending to available on the ledger.

Work goes group by group (merchant, currency, payment date), each group in its own transaction, so a round
of many groups never holds many locks and a failure loses one group's work, not a round's. Nothing is ever
settled twice, whoever runs at once (worker pumps on several machines, `tender settle`):
- a transaction-scoped advisory lock on the group makes settlers of the same group queue, and
- only payables still `waiting_funds` are taken, locked FOR UPDATE, so the second settler finds none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from tender.domain.ids import BALANCE_TRANSACTION, SETTLEMENT, new_id
from tender.domain.ledger import settlement_entry
from tender.domain.money_models import DueGroup, Settlement
from tender.errors import SettlementDateInFuture
from tender.services.objects import payable_object, settlement_object
from tender.store import events
from tender.store import ledger as ledger_store
from tender.store import payables as payable_store
from tender.store import settlements as store
from tender.store.db import Database


@dataclass(frozen=True, slots=True)
class SettledGroup:
    """One group's settlement: the settlement as it stands now, and what this run added to it."""

    merchant_id: str
    settlement: Settlement
    payables: int  # settled by this run
    amount: int  # their net
    created: bool  # the settlement row was made by this run (else an earlier one of the same day grew)


@dataclass(slots=True)
class SettleRound:
    as_of: date
    found: int = 0  # due groups seen; some may have been settled meanwhile by someone else
    settled: list[SettledGroup] = field(default_factory=list)

    @property
    def groups(self) -> int:
        return len(self.settled)

    @property
    def payables(self) -> int:
        return sum(g.payables for g in self.settled)


OnGroup = Callable[[SettledGroup], None]


async def count_due(db: Database, as_of: date) -> tuple[int, int]:
    """(groups, payables) due by `as_of`: the size of the work, for progress bars."""
    async with db.connection() as conn:
        return await payable_store.count_due(conn, as_of)


async def settle_group(db: Database, merchant_id: str, currency: str, day: date) -> SettledGroup | None:
    """Settle one group's waiting payables in one transaction; None when there were none left."""
    group = DueGroup(merchant_id, currency, day)
    async with db.transaction() as conn:
        await store.lock_group(conn, group)
        waiting = await payable_store.waiting_for_update(conn, group)
        if not waiting:
            return None
        ids = [payable_id for payable_id, _ in waiting]
        net = sum(amount for _, amount in waiting)
        settlement, inserted = await store.add(conn, new_id(SETTLEMENT), group, amount=net, payables=len(ids))
        paid = await payable_store.mark_paid(conn, ids, settlement.id)
        if len(paid) != len(ids):  # impossible under the row locks; refuse rather than post a wrong amount
            raise RuntimeError(f"settlement {settlement.id}: {len(ids)} payables locked but {len(paid)} updated")
        if net != 0:  # a day whose refunds cancel its captures moves nothing
            entry = settlement_entry(
                new_id(BALANCE_TRANSACTION),
                merchant_id=merchant_id,
                settlement_id=settlement.id,
                currency=currency,
                net=net,
                on=day,
            )
            await ledger_store.post(conn, [entry])
        happened: list[tuple[str, str, str, dict[str, Any]]] = [
            (merchant_id, "payable.paid", p.id, payable_object(p)) for p in sorted(paid, key=lambda p: p.id)
        ]
        # A late payable of a day already settled (a refund that succeeded meanwhile) joins its settlement.
        happened.append(
            (
                merchant_id,
                "settlement.created" if inserted else "settlement.updated",
                settlement.id,
                settlement_object(settlement),
            )
        )
        await events.record(conn, happened)
    return SettledGroup(merchant_id, settlement, len(ids), net, inserted)


async def settle_due(db: Database, as_of: date, *, max_groups: int, on_group: OnGroup | None = None) -> SettleRound:
    """One round: settle up to `max_groups` groups of payables due by `as_of`, each in its own transaction."""
    async with db.connection() as conn:
        groups = await payable_store.due_groups(conn, as_of, max_groups)
    result = SettleRound(as_of, found=len(groups))
    for group in groups:
        settled = await settle_group(db, group.merchant_id, group.currency, group.payment_date)
        if settled is not None:
            result.settled.append(settled)
            if on_group is not None:
                on_group(settled)
    return result


async def settle_all(db: Database, as_of: date, *, max_groups: int, on_group: OnGroup | None = None) -> SettleRound:
    """Rounds of `settle_due` until nothing is due by `as_of` (`tender settle`)."""
    total = SettleRound(as_of)
    while True:
        round_ = await settle_due(db, as_of, max_groups=max_groups, on_group=on_group)
        total.found += round_.found
        total.settled.extend(round_.settled)
        # A round that found fewer than it may take has seen every due group. (Groups settled meanwhile by
        # someone else are `paid` now, so the next look-up cannot find them again: this always ends.)
        if round_.found < max_groups:
            return total


def business_today(tz: tzinfo) -> date:
    return datetime.now(tz).date()


def check_as_of(as_of: date, tz: tzinfo, *, force: bool = False) -> None:
    """Settling pays merchants: a date after today (in the business time zone) would make money available
    before it is due, so it needs `force` (an operator who knows why)."""
    today = business_today(tz)
    if as_of > today and not force:
        raise SettlementDateInFuture(
            f"as_of: {as_of} is after today ({today} in {tz}); settling as of a future date pays merchants"
            " before their money is due",
            param="as_of",
        )
