"""Payables: what a capture earns the merchant (and a refund takes back), posted to the ledger in the same
transaction as the status change that causes it.

`record_captures` is called by every path that moves a payment to `succeeded` (the worker's pump, inbound
processor notifications) inside that path's transaction. It is idempotent: a payment has at most one
capture payable (a unique index) and one ledger entry (another), so a repeated call posts nothing.

`record_refunds` is the money side of refunds that just succeeded, in the transaction that marks them so
(services/refunds.py says how a refund's payable and entry follow its capture's).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, tzinfo

from tender.domain.fees import DEFAULT_PLAN, FeePlan, funding_of, payable_terms
from tender.domain.ids import BALANCE_TRANSACTION, PAYABLE, new_id
from tender.domain.ledger import Entry, capture_entry, refund_entry
from tender.domain.money_models import Payable, Refund
from tender.services.objects import payable_object
from tender.store import events
from tender.store import ledger as ledger_store
from tender.store import payables as store
from tender.store import payments as payment_store
from tender.store.db import Conn


def business_date(moment: datetime, tz: tzinfo) -> date:
    return moment.astimezone(tz).date()


async def _paid_events(conn: Conn, paid: Sequence[Payable]) -> None:
    await events.record(conn, [(p.merchant_id, "payable.paid", p.id, payable_object(p)) for p in paid])


async def record_captures(conn: Conn, payment_ids: Sequence[str], *, tz: tzinfo, now: datetime) -> int:
    """Payables and ledger entries for payments that are now captured; returns how many were made."""
    if not payment_ids:
        return 0
    found = await store.captured_with_fee_rules(conn, payment_ids)
    if not found:
        return 0
    captured = [c for c, _ in found]
    plans: dict[str, FeePlan] = {}  # each merchant's (read with the payments): the default without one of its own
    for c, rules in found:
        if c.merchant_id not in plans:
            plans[c.merchant_id] = DEFAULT_PLAN if rules is None else FeePlan.from_list(rules)
    today = business_date(now, tz)
    payables: list[Payable] = []
    processors: dict[str, str] = {}  # payment -> processor, whose receivable the entry debits
    for c in captured:
        method, funding = c.payment_method.get("type", "card"), funding_of(c.payment_method)
        terms = payable_terms(
            plans[c.merchant_id],
            amount=c.amount_captured,
            currency=c.currency,
            payment_method=method,
            funding=funding,
            captured_on=today,
        )
        paid = terms.status == "paid"
        payables.append(
            Payable(id=new_id(PAYABLE), merchant_id=c.merchant_id, type="payment", payment_id=c.id, refund_id=None,
                    status=terms.status, amount=terms.amount, fee=terms.fee, net=terms.net, currency=c.currency,
                    payment_method=method, funding=funding, payment_date=terms.payment_date, settlement_id=None,
                    created=now, paid_at=now if paid else None)
        )  # fmt: skip
        processors[c.id] = c.processor
    # A concurrent path may have captured the same payment first: only what we inserted is posted.
    made = await store.insert(conn, payables)
    entries: list[Entry] = [
        capture_entry(
            new_id(BALANCE_TRANSACTION),
            merchant_id=p.merchant_id,
            payment_id=p.payment_id,
            processor=processors[p.payment_id],
            currency=p.currency,
            amount=p.amount,
            fee=p.fee,
            available=p.status == "paid",
            available_on=p.payment_date,
        )
        for p in made
    ]
    await ledger_store.post(conn, entries)
    await _paid_events(conn, [p for p in made if p.status == "paid"])
    return len(made)


async def record_refunds(conn: Conn, refunds: Sequence[Refund], *, tz: tzinfo, now: datetime) -> None:
    """The money side of succeeded refunds, in the transaction that marks them succeeded: the payments'
    `amount_refunded`, a refund payable each (negative amount and net, no fee) and its ledger entry."""
    if not refunds:
        return
    amounts: dict[str, int] = defaultdict(int)
    for r in refunds:
        amounts[r.payment_id] += r.amount
    await payment_store.add_refunded(conn, amounts, now)
    captures = await store.captures_for_update(conn, list(amounts))
    # A payment captured before payables existed has none: its refund is taken from available at once.
    methods = await payment_store.payment_methods(conn, [p for p in amounts if p not in captures])
    today = business_date(now, tz)
    payables: list[Payable] = []
    entries: list[Entry] = []
    for r in sorted(refunds, key=lambda r: r.id):
        capture = captures.get(r.payment_id)
        waiting = capture is not None and capture.status == "waiting_funds"
        if capture is not None:
            method, funding = capture.payment_method, capture.funding
        else:
            pm = methods.get(r.payment_id) or {}
            method, funding = pm.get("type", "card"), funding_of(pm)
        payment_date = capture.payment_date if waiting and capture is not None else today
        payables.append(
            Payable(id=new_id(PAYABLE), merchant_id=r.merchant_id, type="refund", payment_id=r.payment_id,
                    refund_id=r.id, status="waiting_funds" if waiting else "paid", amount=-r.amount, fee=0,
                    net=-r.amount, currency=r.currency, payment_method=method, funding=funding,
                    payment_date=payment_date, settlement_id=None, created=now, paid_at=None if waiting else now)
        )  # fmt: skip
        entries.append(
            refund_entry(
                new_id(BALANCE_TRANSACTION),
                merchant_id=r.merchant_id,
                refund_id=r.id,
                processor=r.processor,
                currency=r.currency,
                amount=r.amount,
                from_available=not waiting,
                available_on=payment_date,
            )
        )
    made = await store.insert(conn, payables)
    await ledger_store.post(conn, entries)
    await _paid_events(conn, sorted((p for p in made if p.status == "paid"), key=lambda p: p.id))
