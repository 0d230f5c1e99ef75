"""Ledger verification: proves the journal balances, the accounts' stored balances equal their postings,
and each merchant's balances equal the sums of their payables (`tender ledger verify`, the admin API)."""

from __future__ import annotations

from tender.domain.money_models import LedgerVerification
from tender.store import ledger as store
from tender.store.db import Database


async def verify(db: Database) -> LedgerVerification:
    """Every check, read from ONE snapshot so that postings committed meanwhile cannot show as drift."""
    async with db.snapshot() as conn:
        return LedgerVerification(
            totals=await store.totals(conn),
            unbalanced_entries=await store.unbalanced_entries(conn),
            entries_without_lines=await store.entries_without_lines(conn),
            drifted_accounts=await store.drifted_accounts(conn),
            balance_mismatches=await store.balances_against_payables(conn),
        )
