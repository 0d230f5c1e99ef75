"""SQL for fee plans: at most one per merchant (the default plan, domain/fees.py, is no row)."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.types.json import Jsonb

from tender.domain.fees import FeePlan
from tender.store.db import Conn


async def plans_of(conn: Conn, merchant_ids: Sequence[str]) -> dict[str, FeePlan]:
    """The plans these merchants have; merchants without one are absent."""
    cur = await conn.execute(
        "SELECT merchant_id, rules FROM fee_plans WHERE merchant_id = ANY(%s)", (list(merchant_ids),)
    )
    return {r["merchant_id"]: FeePlan.from_list(r["rules"]) for r in await cur.fetchall()}


async def get(conn: Conn, merchant_id: str) -> FeePlan | None:
    cur = await conn.execute("SELECT rules FROM fee_plans WHERE merchant_id = %s", (merchant_id,))
    row = await cur.fetchone()
    return None if row is None else FeePlan.from_list(row["rules"])


async def put(conn: Conn, merchant_id: str, plan: FeePlan) -> None:
    await conn.execute(
        "INSERT INTO fee_plans (merchant_id, rules) VALUES (%s, %s)"
        " ON CONFLICT (merchant_id) DO UPDATE SET rules = excluded.rules, updated = now()",
        (merchant_id, Jsonb(plan.as_list())),
    )


async def delete(conn: Conn, merchant_id: str) -> None:
    await conn.execute("DELETE FROM fee_plans WHERE merchant_id = %s", (merchant_id,))
