"""Read-side SQL for the dashboard's merchant pages: payment search, a payment's timeline, the balance's
history and payables by due date. Every query is scoped by the merchant it is given (the session's), and
each page runs a fixed number of them (no query per row). The bench (`bench/dashboard.py`) times them on
100,000 payments; the search's indexes are migration 0017's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg import sql
from psycopg.rows import class_row

from tender.domain.models import Payment
from tender.store.db import Conn, Page
from tender.store.payments import PAYMENT_COLUMNS
from tender.store.rows import fetch_all

_PAYMENT_LIST = sql.SQL(", ").join(map(sql.Identifier, PAYMENT_COLUMNS)).as_string()


@dataclass(frozen=True, slots=True)
class PaymentSearch:
    """What the payments page filters by; None is no filter. `text` is one box: a payment id, a reference,
    a card's last 4 digits, a customer id or a customer's email (told apart by their shape)."""

    text: str | None = None
    status: str | None = None
    created_from: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive


def _text_condition(text: str, merchant_id: str) -> tuple[str, list[Any]]:
    if text.startswith("pay_"):
        return "id = %s", [text]
    if text.startswith("cus_"):
        return "customer = %s", [text]
    if "@" in text:
        # The customer's id is what a payment holds: the email is looked up first, within the merchant.
        return (
            "customer IN (SELECT id FROM customers WHERE merchant_id = %s AND email = %s)",
            [merchant_id, text],
        )
    if len(text) == 4 and text.isdigit():
        # Four digits are a card's last4, or a reference of four digits: either is found.
        return "((payment_method -> 'card' ->> 'last4') = %s OR reference = %s)", [text, text]
    return "reference = %s", [text]


async def search_payments(
    conn: Conn, merchant_id: str, search: PaymentSearch, *, limit: int, starting_after: str | None
) -> Page[Payment]:
    """Newest first, `limit` a page, the cursor being the last id seen (ids sort by creation time)."""
    where = ["merchant_id = %s"]
    params: list[Any] = [merchant_id]
    if search.text:
        condition, values = _text_condition(search.text, merchant_id)
        where.append(condition)
        params += values
    if search.status:
        where.append("status = %s")
        params.append(search.status)
    if search.created_from is not None:
        where.append("created >= %s")
        params.append(search.created_from)
    if search.created_before is not None:
        where.append("created < %s")
        params.append(search.created_before)
    if starting_after is not None:
        where.append("id < %s")
        params.append(starting_after)
    query = f"SELECT {_PAYMENT_LIST} FROM payments WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s"
    async with conn.cursor(row_factory=class_row(Payment)) as cur:
        await cur.execute(query, (*params, limit + 1))
        rows = await cur.fetchall()
    return Page(rows[:limit], len(rows) > limit)


# -- a payment's timeline ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One processor operation of a payment (authorize, capture, cancel), as the timeline shows it."""

    id: str
    operation: str
    processor: str
    status: str
    calls: int
    amount: int | None
    failure_code: str | None
    decline_code: str | None
    message: str | None
    created: datetime
    finished: datetime | None


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event about the payment or one of its refunds; `status` is the object's status it recorded."""

    id: str
    type: str
    object_id: str
    status: str | None
    created: datetime


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One event's delivery to one endpoint, as it stands."""

    id: str
    event_id: str
    endpoint_id: str
    endpoint_url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    created: datetime


@dataclass(frozen=True, slots=True)
class RefundRow:
    id: str
    amount: int
    currency: str
    status: str
    failure_code: str | None
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class PayableRow:
    id: str
    type: str
    status: str
    amount: int
    fee: int
    net: int
    currency: str
    payment_date: date
    settlement_id: str | None
    created: datetime


@dataclass(frozen=True, slots=True)
class PaymentHistory:
    """Everything the payment's page shows besides the payment: five queries, whatever the counts."""

    attempts: list[AttemptRow]
    refunds: list[RefundRow]
    payables: list[PayableRow]
    events: list[EventRow]
    deliveries: list[DeliveryRow]


async def payment_history(conn: Conn, merchant_id: str, payment_id: str) -> PaymentHistory:
    """The payment's attempts, refunds, payables, the events about it and its refunds, and their deliveries.
    The caller has found the payment within `merchant_id`; each query is scoped by it again all the same."""
    attempts = await fetch_all(
        conn,
        AttemptRow,
        "SELECT a.id, a.operation, a.processor, a.status, a.calls, a.amount, a.failure_code, a.decline_code,"
        " a.message, a.created, a.finished FROM payment_attempts a JOIN payments p ON p.id = a.payment_id"
        " WHERE a.payment_id = %s AND p.merchant_id = %s ORDER BY a.id",
        (payment_id, merchant_id),
    )
    refunds = await fetch_all(
        conn,
        RefundRow,
        "SELECT id, amount, currency, status, failure_code, created, updated FROM refunds"
        " WHERE payment_id = %s AND merchant_id = %s ORDER BY id",
        (payment_id, merchant_id),
    )
    # The capture's payable and the refunds': each condition is one of the partial unique indexes' own.
    payables = await fetch_all(
        conn,
        PayableRow,
        "SELECT id, type, status, amount, fee, net, currency, payment_date, settlement_id, created FROM payables"
        " WHERE ((type = 'payment' AND payment_id = %s) OR (type = 'refund' AND refund_id = ANY(%s)))"
        " AND merchant_id = %s ORDER BY id",
        (payment_id, [r.id for r in refunds], merchant_id),
    )
    objects = [payment_id, *(r.id for r in refunds), *(p.id for p in payables)]
    events = await fetch_all(
        conn,
        EventRow,
        "SELECT id, type, object_id, data -> 'object' ->> 'status' AS status, created FROM events"
        " WHERE object_id = ANY(%s) AND merchant_id = %s ORDER BY id",
        (objects, merchant_id),
    )
    deliveries = await fetch_all(
        conn,
        DeliveryRow,
        "SELECT d.id, d.event_id, d.endpoint_id, w.url AS endpoint_url, d.status, d.attempts, d.last_status_code,"
        " d.last_error, d.last_attempt_at, d.created FROM webhook_deliveries d"
        " JOIN webhook_endpoints w ON w.id = d.endpoint_id"
        " WHERE d.event_id = ANY(%s) AND d.merchant_id = %s ORDER BY d.id",
        ([e.id for e in events], merchant_id),
    )
    return PaymentHistory(attempts, refunds, payables, events, deliveries)


# -- money ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceMovement:
    """The net change of one of the merchant's balances (pending or available) over one business day."""

    day: date
    kind: str  # merchant_pending | merchant_available
    currency: str
    delta: int  # as the merchant sees it: positive when the balance grew


@dataclass(frozen=True, slots=True)
class AccountNow:
    kind: str
    currency: str
    amount: int


async def balance_now(conn: Conn, merchant_id: str) -> list[AccountNow]:
    return await fetch_all(
        conn,
        AccountNow,
        "SELECT kind, currency, -balance AS amount FROM ledger_accounts"
        " WHERE owner = %s AND kind IN ('merchant_pending', 'merchant_available') ORDER BY currency, kind",
        (merchant_id,),
    )


async def balance_movements(
    conn: Conn,
    merchant_id: str,
    *,
    since: datetime,
    until: datetime | None,
    since_id: str,
    until_id: str | None,
    time_zone: str,
) -> list[BalanceMovement]:
    """Per business day (in `time_zone`), how each of the merchant's two balances moved through the entries
    created in [since, until). The entries are found first, by the merchant's id index between `since_id` and
    `until_id` (ids sort by creation time: bounds a little wider than the times), and only then their lines,
    by primary key: the merchant's whole journal is never read."""
    return await fetch_all(
        conn,
        BalanceMovement,
        "WITH e AS MATERIALIZED (SELECT id, created FROM journal_entries WHERE merchant_id = %(merchant)s"
        "   AND id >= %(since_id)s AND (%(until_id)s::text IS NULL OR id < %(until_id)s)"
        "   AND created >= %(since)s AND (%(until)s::timestamptz IS NULL OR created < %(until)s)),"
        " a AS MATERIALIZED (SELECT id, kind, currency FROM ledger_accounts WHERE owner = %(merchant)s"
        "   AND kind IN ('merchant_pending', 'merchant_available'))"
        " SELECT (e.created AT TIME ZONE %(tz)s)::date AS day, a.kind, a.currency, -sum(l.amount)::bigint AS delta"
        " FROM e JOIN journal_lines l ON l.entry_id = e.id JOIN a ON a.id = l.account_id"
        " GROUP BY 1, 2, 3 ORDER BY 1",
        {
            "tz": time_zone,
            "merchant": merchant_id,
            "since_id": since_id,
            "until_id": until_id,
            "since": since,
            "until": until,
        },
    )


@dataclass(frozen=True, slots=True)
class DueDay:
    """The merchant's payables still waiting for funds that fall due on one day, in one currency."""

    payment_date: date
    currency: str
    count: int
    amount: int
    fee: int
    net: int


async def payables_by_due_date(conn: Conn, merchant_id: str, *, limit: int) -> list[DueDay]:
    """The first `limit` days (earliest first) on which waiting payables fall due, summed per currency."""
    return await fetch_all(
        conn,
        DueDay,
        "SELECT payment_date, currency, count(*)::int AS count, sum(amount)::bigint AS amount,"
        " sum(fee)::bigint AS fee, sum(net)::bigint AS net FROM payables"
        " WHERE merchant_id = %s AND status = 'waiting_funds'"
        " GROUP BY payment_date, currency ORDER BY payment_date, currency LIMIT %s",
        (merchant_id, limit),
    )


async def settlement_payables(conn: Conn, merchant_id: str, settlement_id: str, *, limit: int) -> list[PayableRow]:
    """A settlement's payables (the first `limit`, oldest first)."""
    return await fetch_all(
        conn,
        PayableRow,
        "SELECT id, type, status, amount, fee, net, currency, payment_date, settlement_id, created FROM payables"
        " WHERE settlement_id = %s AND merchant_id = %s ORDER BY id LIMIT %s",
        (settlement_id, merchant_id, limit),
    )


@dataclass(frozen=True, slots=True)
class KeyHint:
    """An API key as the dashboard may show it: its kind and hint only (keys are kept as hashes)."""

    kind: str
    hint: str
    created: datetime
    expires_at: datetime | None


async def api_key_hints(conn: Conn, merchant_id: str) -> list[KeyHint]:
    """The merchant's keys that still work (or will until their roll's expiry), newest first."""
    return await fetch_all(
        conn,
        KeyHint,
        "SELECT kind, hint, created, expires_at FROM api_keys WHERE merchant_id = %s AND revoked IS NULL"
        " AND (expires_at IS NULL OR expires_at > now()) ORDER BY created DESC, kind",
        (merchant_id,),
    )


# -- seeding (the benchmark) ---------------------------------------------------------------------------------


async def copy_rows(conn: Conn, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY `rows` into `table` (names from our code, never from a request): `bench/dashboard.py` seeds
    100,000 payments with their attempts, events, payables and ledger entries in seconds this way. The ledger's
    triggers run on a COPY as on an INSERT (one statement: each entry must balance)."""
    count = 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)
            count += 1
    return count
