"""The housekeeping sweep for stranded rows (store/stranded.py) is answered from its partial indexes
(migration 0009), not by reading each table whole: its predicates and the indexes' must stay the same."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql

from tender.store import stranded

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("rows", stranded.TABLES, ids=lambda r: r.table)
async def test_the_sweep_reads_only_its_partial_index(container: Any, rows: stranded.DueRows) -> None:
    query = sql.SQL("EXPLAIN SELECT id FROM {table} WHERE {waiting} AND next_run_at IS NULL").format(
        table=sql.Identifier(rows.table), waiting=sql.SQL(rows.waiting)
    )
    async with container.db.transaction() as conn:
        await conn.execute("SET LOCAL enable_seqscan = off")  # small test tables would be scanned anyway
        cur = await conn.execute(query)
        plan = " ".join(str(next(iter(r.values()))) for r in await cur.fetchall())
    assert f"{rows.table}_stranded" in plan, plan
