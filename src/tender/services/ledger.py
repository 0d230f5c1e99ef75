"""Ledger verification: proves the journal balances, the accounts' stored balances equal their postings,
and each merchant's balances equal the sums of their payables (`tender ledger verify`, the admin API)."""

from __future__ import annotations

from typing import Any

from tender.store import ledger as store
from tender.store.db import Database


def _ints(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """SUM over BIGINT is NUMERIC (a Decimal in Python); amounts are shown as integers, never as decimals."""
    return [{k: (int(v) if k in keys and v is not None else v) for k, v in r.items()} for r in rows]


async def verify(db: Database) -> dict[str, Any]:
    """Every check, read from ONE snapshot so that postings committed meanwhile cannot show as drift."""
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        totals = await store.totals(conn)
        unbalanced = _ints(await store.unbalanced_entries(conn), "off")
        without_lines = await store.entries_without_lines(conn)
        drifted = _ints(await store.drifted_accounts(conn), "stored", "postings")
        mismatches = _ints(await store.balances_against_payables(conn), "ledger", "payables")
    return {
        "object": "ledger_verification",
        "balanced": not (unbalanced or without_lines or drifted or mismatches),
        **totals,
        "unbalanced_entries": unbalanced,
        "entries_without_lines": without_lines,
        "drifted_accounts": drifted,
        "balance_mismatches": mismatches,
    }
