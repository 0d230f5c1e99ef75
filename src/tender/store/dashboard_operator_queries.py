"""SQL of the dashboard's operator pages that no other store module has: the merchants' list, each with
whether it has a fee plan and routing rules of its own (one query, no look-up per row)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from tender.store.db import Conn, Page, newest_first


@dataclass(frozen=True, slots=True)
class MerchantRow:
    id: str
    name: str
    created: datetime
    own_fee_plan: bool  # False: the default plan
    own_routing: bool  # False: every payment goes to the default processor


_COLUMNS = (
    "id, name, created,"
    " EXISTS (SELECT 1 FROM fee_plans f WHERE f.merchant_id = merchants.id) AS own_fee_plan,"
    " EXISTS (SELECT 1 FROM routing_rules r WHERE r.merchant_id = merchants.id) AS own_routing"
)


async def merchants(conn: Conn, *, limit: int, starting_after: str | None) -> Page[MerchantRow]:
    """Newest first (merchant ids are ULIDs), `starting_after` the last id seen."""
    return await newest_first(
        conn, "merchants", _COLUMNS, limit=limit, starting_after=starting_after, equal={},
        row_factory=class_row(MerchantRow),
    )  # fmt: skip
