"""Money after capture: fee plans through the admin API, captured payments, and the payables, settlements,
journal entries and ledger checks read back from the database."""

from __future__ import annotations

from typing import Any

from tender.services import ledger as ledger_service
from tender.services.objects import ledger_verification_object
from tests.support.api import auth
from tests.support.payments import authorizer, drain, pay

CREDIT = "4242424242424242"
DEBIT = "4000056655665556"


def admin(settings: Any) -> dict[str, str]:
    return auth(settings.admin_key.get_secret_value())


def plan_rule(percent: str, delay_days: int, starts: str = "waiting_funds", **kw: Any) -> dict[str, Any]:
    return {"payment_method": "*", "funding": "*", "percent": percent, "delay_days": delay_days, "starts": starts, **kw}


async def set_fee_plan(api: Any, settings: Any, merchant_id: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    r = await api.put(f"/admin/v1/merchants/{merchant_id}/fee_plan", json={"rules": rules}, headers=admin(settings))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def capture(api: Any, container: Any, merchant: Any, *payments: tuple[str, int, str]) -> list[str]:
    """Pay (card number, amount, currency) each and run the worker's payment pump until done."""
    ids = [
        (await pay(api, merchant, number, amount=amount, currency=currency))["id"]
        for number, amount, currency in payments
    ]
    await drain(authorizer(container))
    return ids


async def query(container: Any, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with container.db.connection() as conn:
        cur = await conn.execute(sql, params)
        return [dict(r) for r in await cur.fetchall()]


async def payables_of(container: Any, merchant_id: str) -> list[dict[str, Any]]:
    return await query(container, "SELECT * FROM payables WHERE merchant_id = %s ORDER BY id", merchant_id)


async def settlements_of(container: Any, merchant_id: str) -> list[dict[str, Any]]:
    return await query(container, "SELECT * FROM settlements WHERE merchant_id = %s ORDER BY id", merchant_id)


async def assert_ledger_clean(container: Any) -> dict[str, Any]:
    report = ledger_verification_object(await ledger_service.verify(container.db))
    assert report["balanced"] is True, report
    assert report["unbalanced_entries"] == report["drifted_accounts"] == report["balance_mismatches"] == []
    return report


async def payment_payables(container: Any, payment_id: str) -> list[dict[str, Any]]:
    """A payment's payables (`payables_of` takes a merchant's)."""
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT * FROM payables WHERE payment_id = %s ORDER BY id", (payment_id,))
        return list(await cur.fetchall())


async def entries_of(container: Any, payment_id: str) -> list[dict[str, Any]]:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT e.id, e.type, e.amount, e.fee, e.net, e.available_on,"
            " jsonb_object_agg(l.account_id, l.amount) AS lines"
            " FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id WHERE e.source_id = %s"
            " GROUP BY e.id ORDER BY e.id",
            (payment_id,),
        )
        return list(await cur.fetchall())
