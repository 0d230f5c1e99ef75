"""A merchant's billing settings (dunning), kept on its `merchants` row (migration 0016)."""

from __future__ import annotations

from collections.abc import Sequence

from tender.store.db import Conn


async def get(conn: Conn, merchant_id: str) -> tuple[list[int], str] | None:
    """(dunning_days, on_final_failure), or None for an unknown merchant."""
    cur = await conn.execute("SELECT dunning_days, on_final_failure FROM merchants WHERE id = %s", (merchant_id,))
    row = await cur.fetchone()
    return None if row is None else (list(row["dunning_days"]), str(row["on_final_failure"]))


async def put(conn: Conn, merchant_id: str, dunning_days: Sequence[int], on_final_failure: str) -> bool:
    """Replace them; False for an unknown merchant."""
    cur = await conn.execute(
        "UPDATE merchants SET dunning_days = %s, on_final_failure = %s WHERE id = %s",
        (list(dunning_days), on_final_failure, merchant_id),
    )
    return cur.rowcount == 1
