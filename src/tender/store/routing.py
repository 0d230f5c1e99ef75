"""SQL for merchants' routing rules (`routing_rules`: one row per merchant, the rules as validated JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from tender.store.db import Conn
from tender.store.rows import fetch_one


@dataclass(frozen=True, slots=True)
class RoutingRow:
    merchant_id: str
    rules: list[dict[str, Any]]  # domain/routing.RoutingRules.to_json(): read back with parse_rules
    updated: datetime


async def get(conn: Conn, merchant_id: str) -> RoutingRow | None:
    """The merchant's rules (a primary-key look-up: the acceptance of every payment makes it)."""
    return await fetch_one(
        conn, RoutingRow, "SELECT merchant_id, rules, updated FROM routing_rules WHERE merchant_id = %s", (merchant_id,)
    )


async def put(conn: Conn, merchant_id: str, rules: list[dict[str, Any]]) -> RoutingRow:
    """Replace the merchant's rules."""
    row = await fetch_one(
        conn,
        RoutingRow,
        "INSERT INTO routing_rules (merchant_id, rules) VALUES (%s, %s)"
        " ON CONFLICT (merchant_id) DO UPDATE SET rules = EXCLUDED.rules, updated = now()"
        " RETURNING merchant_id, rules, updated",
        (merchant_id, Jsonb(rules)),
    )
    assert row is not None  # an upsert ... RETURNING returns its row
    return row
