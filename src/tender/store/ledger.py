"""SQL for the ledger: posting entries, reading balances and balance transactions (the journal as the merchant
reads it), and the checks `tender ledger verify` runs."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.rows import DictRow

from tender.domain.ledger import Entry, account_kind
from tender.domain.money_models import (
    AccountBalance,
    BalanceMismatch,
    BalanceTransaction,
    DriftedAccount,
    LedgerTotals,
    TransactionStatus,
    UnbalancedEntry,
)
from tender.store.db import Conn, Page, newest_first


# unnest's arrays go in binary (%b): cheaper to dump than text arrays (store/payments.py, issue 16).
async def post(conn: Conn, entries: Sequence[Entry]) -> None:
    """Write entries and their lines. All lines go in ONE statement: the database checks per statement
    that each entry balances (migration 0003) and moves the accounts' balances."""
    if not entries:
        return
    accounts = sorted({line.account for e in entries for line in e.lines})
    kinds = [account_kind(a) for a in accounts]
    await conn.execute(
        "INSERT INTO ledger_accounts (id, kind, owner, currency)"
        " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) ON CONFLICT (id) DO NOTHING",
        (accounts, [k[0] for k in kinds], [k[1] for k in kinds], [k[2] for k in kinds]),
    )
    await conn.execute(
        "INSERT INTO journal_entries (id, merchant_id, type, source_id, currency, amount, fee, net, available_on)"
        " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[],"
        " %b::bigint[], %b::bigint[], %b::date[])",
        (
            [e.id for e in entries],
            [e.merchant_id for e in entries],
            [e.type for e in entries],
            [e.source_id for e in entries],
            [e.currency for e in entries],
            [e.amount for e in entries],
            [e.fee for e in entries],
            [e.net for e in entries],
            [e.available_on for e in entries],
        ),
    )
    lines = [(e.id, line.account, e.currency, line.amount) for e in entries for line in e.lines]
    await conn.execute(
        "INSERT INTO journal_lines (entry_id, account_id, currency, amount)"
        " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[])",
        ([r[0] for r in lines], [r[1] for r in lines], [r[2] for r in lines], [r[3] for r in lines]),
    )


async def merchant_balances(conn: Conn, merchant_id: str) -> list[AccountBalance]:
    """The merchant's accounts: kind, currency and balance as shown (credit-normal, so minus the sum)."""
    cur = await conn.execute(
        "SELECT kind, currency, -balance AS amount FROM ledger_accounts WHERE owner = %s ORDER BY currency, kind",
        (merchant_id,),
    )
    return [AccountBalance(r["kind"], r["currency"], int(r["amount"])) for r in await cur.fetchall()]


async def entry_statuses(conn: Conn, entry_ids: Sequence[str]) -> dict[str, TransactionStatus]:
    """`pending` or `available`: where each entry's money is held now. A settlement entry has made its money
    available; a payment or refund entry follows its payable (`paid` once a settlement moved it from pending
    to available, or at once for payables that start paid), whose sums by status `tender ledger verify`
    proves equal to the merchant's pending and available accounts. Never the date: a payable whose date has
    come is still pending until the settlement runs."""
    if not entry_ids:
        return {}
    cur = await conn.execute(
        "SELECT e.id, CASE"
        "  WHEN e.type = 'settlement' THEN 'available'"
        "  WHEN coalesce(pp.status, pr.status) IS NOT NULL THEN"
        "   CASE coalesce(pp.status, pr.status) WHEN 'paid' THEN 'available' ELSE 'pending' END"
        # No payable to follow: where the entry posted the merchant's money.
        "  WHEN EXISTS (SELECT 1 FROM journal_lines l JOIN ledger_accounts a ON a.id = l.account_id"
        "   WHERE l.entry_id = e.id AND a.kind = 'merchant_pending') THEN 'pending'"
        "  ELSE 'available' END AS status"
        " FROM journal_entries e"
        " LEFT JOIN payables pp ON e.type = 'payment' AND pp.type = 'payment' AND pp.payment_id = e.source_id"
        " LEFT JOIN payables pr ON e.type = 'refund' AND pr.type = 'refund' AND pr.refund_id = e.source_id"
        " WHERE e.id = ANY(%s)",
        (list(entry_ids),),
    )
    return {r["id"]: r["status"] for r in await cur.fetchall()}


# -- balance transactions: the journal as the merchant reads it ---------------------------------------------

ENTRY_COLUMNS = "id, merchant_id, type, source_id, currency, amount, fee, net, available_on, created"


async def _with_statuses(conn: Conn, rows: Sequence[DictRow]) -> list[BalanceTransaction]:
    statuses = await entry_statuses(conn, [r["id"] for r in rows])
    return [BalanceTransaction(**r, status=statuses[r["id"]]) for r in rows]


async def balance_transaction(conn: Conn, merchant_id: str, entry_id: str) -> BalanceTransaction | None:
    cur = await conn.execute(
        f"SELECT {ENTRY_COLUMNS} FROM journal_entries WHERE id = %s AND merchant_id = %s", (entry_id, merchant_id)
    )
    row = await cur.fetchone()
    return None if row is None else (await _with_statuses(conn, [row]))[0]


async def balance_transactions(
    conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None, type: str | None, source_id: str | None
) -> Page[BalanceTransaction]:
    rows, more = await newest_first(
        conn, "journal_entries", ENTRY_COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "type": type, "source_id": source_id},
    )  # fmt: skip
    return Page(await _with_statuses(conn, rows), more)


# -- verification ----------------------------------------------------------------------------------------


async def unbalanced_entries(conn: Conn, limit: int = 20) -> list[UnbalancedEntry]:
    cur = await conn.execute(
        "SELECT entry_id, currency, sum(amount) AS off FROM journal_lines GROUP BY entry_id, currency"
        " HAVING sum(amount) <> 0 ORDER BY entry_id LIMIT %s",
        (limit,),
    )
    # SUM over BIGINT is NUMERIC (a Decimal in Python); amounts are integers, never decimals.
    return [UnbalancedEntry(r["entry_id"], r["currency"], int(r["off"])) for r in await cur.fetchall()]


async def entries_without_lines(conn: Conn, limit: int = 20) -> list[str]:
    cur = await conn.execute(
        "SELECT e.id FROM journal_entries e WHERE e.net <> 0 AND NOT EXISTS"
        " (SELECT 1 FROM journal_lines l WHERE l.entry_id = e.id) ORDER BY e.id LIMIT %s",
        (limit,),
    )
    return [r["id"] for r in await cur.fetchall()]


async def drifted_accounts(conn: Conn, limit: int = 20) -> list[DriftedAccount]:
    """Accounts whose stored balance differs from the sum of their postings."""
    cur = await conn.execute(
        "SELECT a.id, a.balance AS stored, coalesce(s.total, 0) AS postings FROM ledger_accounts a"
        " LEFT JOIN (SELECT account_id, sum(amount) AS total FROM journal_lines GROUP BY account_id) s"
        " ON s.account_id = a.id WHERE a.balance <> coalesce(s.total, 0) ORDER BY a.id LIMIT %s",
        (limit,),
    )
    return [DriftedAccount(r["id"], int(r["stored"]), int(r["postings"])) for r in await cur.fetchall()]


async def balances_against_payables(conn: Conn, limit: int = 20) -> list[BalanceMismatch]:
    """Merchant/currency/bucket where the ledger's balance differs from the sum of payables' net."""
    cur = await conn.execute(
        """
        WITH ledger AS (
            SELECT owner AS merchant_id, currency,
                   CASE kind WHEN 'merchant_pending' THEN 'waiting_funds' ELSE 'paid' END AS status,
                   -balance AS amount
            FROM ledger_accounts WHERE kind IN ('merchant_pending', 'merchant_available')
        ), payable AS (
            SELECT merchant_id, currency, status, sum(net) AS amount FROM payables
            GROUP BY merchant_id, currency, status
        )
        SELECT coalesce(l.merchant_id, p.merchant_id) AS merchant_id, coalesce(l.currency, p.currency) AS currency,
               coalesce(l.status, p.status) AS status, coalesce(l.amount, 0) AS ledger,
               coalesce(p.amount, 0) AS payables
        FROM ledger l FULL JOIN payable p
          ON p.merchant_id = l.merchant_id AND p.currency = l.currency AND p.status = l.status
        WHERE coalesce(l.amount, 0) <> coalesce(p.amount, 0)
        ORDER BY 1, 2, 3 LIMIT %s
        """,
        (limit,),
    )
    return [
        BalanceMismatch(r["merchant_id"], r["currency"], r["status"], int(r["ledger"]), int(r["payables"]))
        for r in await cur.fetchall()
    ]


async def totals(conn: Conn) -> LedgerTotals:
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM journal_entries) AS entries, (SELECT count(*) FROM journal_lines) AS lines,"
        " (SELECT count(*) FROM ledger_accounts) AS accounts, (SELECT count(*) FROM payables) AS payables"
    )
    row = await cur.fetchone()
    assert row is not None
    return LedgerTotals(**{k: int(v) for k, v in row.items()})
