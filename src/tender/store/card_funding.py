"""SQL for a card's funding as the processor reported it (it corrects the BIN table's guess)."""

from __future__ import annotations

from collections.abc import Mapping

from tender.store.db import Conn


async def record(conn: Conn, funding_by_payment: Mapping[str, str]) -> None:
    """Set the funding the processor reported on each card payment's public card and its vault card, where
    it differs. Runs in the caller's transaction, before any payable is made, so the fee follows the
    processor's answer. Nothing is read back: in the pump's pipeline that costs no round trip (issue 16)."""
    if not funding_by_payment:
        return
    ids = sorted(funding_by_payment)
    await conn.execute(
        "WITH reported AS (SELECT * FROM unnest(%s::text[], %s::text[]) AS r(payment_id, funding)),"
        " moved AS ("
        "  UPDATE payments p SET payment_method = jsonb_set(p.payment_method, '{card,funding}', to_jsonb(r.funding))"
        "  FROM reported r WHERE p.id = r.payment_id AND p.payment_method->>'type' = 'card'"
        "  AND p.payment_method->'card'->>'funding' IS DISTINCT FROM r.funding"
        "  RETURNING p.id, p.card_id, r.funding),"
        " vaulted AS (UPDATE vault_cards c SET funding = m.funding FROM moved m WHERE c.id = m.card_id)"
        " SELECT count(*) FROM moved",
        (ids, [funding_by_payment[i] for i in ids]),
    )
