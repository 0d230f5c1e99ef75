"""Fee plans per merchant: read (the default when none is set), validate and set (admin API)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tender.domain.fees import ANY, DEFAULT_PLAN, FeePlan, FeeRule
from tender.domain.money import MAX_AMOUNT, normalize_currency
from tender.store.db import Conn


class FeeRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_method: Literal["card", "upi", "wallet", "netbanking", "bnpl", "*"]
    funding: Literal["credit", "debit", "other", "*"] = "*"
    # A string ("2.9") keeps every digit; a JSON number is read through its shortest decimal form.
    percent: Annotated[str | int | float, Field(description="0 to 100, at most 4 decimal places")]
    fixed: dict[str, Annotated[int, Field(ge=0, le=MAX_AMOUNT)]] = Field(default_factory=dict)
    delay_days: Annotated[int, Field(ge=0, le=3650)]
    starts: Literal["waiting_funds", "paid"]

    @field_validator("percent")
    @classmethod
    def _percent(cls, value: str | int | float) -> str:
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            raise ValueError('percent must be a decimal number such as "2.9"') from None
        if not d.is_finite() or not (0 <= d <= 100):
            raise ValueError("percent must be between 0 and 100")
        if d.as_tuple().exponent < -4:  # type: ignore[operator]
            raise ValueError("percent takes at most 4 decimal places")
        return str(d.normalize()) if d == d.to_integral() else str(d)

    @field_validator("fixed")
    @classmethod
    def _currencies(cls, value: dict[str, int]) -> dict[str, int]:
        return {normalize_currency(k, param="fixed"): v for k, v in value.items()}


class FeePlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: Annotated[list[FeeRuleIn], Field(min_length=1, max_length=50)]

    @model_validator(mode="after")
    def _complete(self) -> FeePlanIn:
        keys = [(r.payment_method, r.funding) for r in self.rules]
        if len(set(keys)) != len(keys):
            raise ValueError("two rules for the same payment_method and funding")
        if (ANY, ANY) not in keys:
            raise ValueError('a plan needs a catch-all rule: payment_method "*", funding "*"')
        return self

    def plan(self) -> FeePlan:
        return FeePlan(
            tuple(
                FeeRule(r.payment_method, r.funding, Decimal(str(r.percent)), r.delay_days, r.starts, r.fixed)
                for r in self.rules
            )
        )


def plan_object(merchant_id: str, plan: FeePlan, *, default: bool) -> dict[str, Any]:
    return {"object": "fee_plan", "merchant": merchant_id, "default": default, "rules": plan.as_list()}


async def plans_for(conn: Conn, merchant_ids: Iterable[str]) -> dict[str, FeePlan]:
    """Each merchant's plan; the default for merchants without one."""
    ids = sorted(set(merchant_ids))
    cur = await conn.execute("SELECT merchant_id, rules FROM fee_plans WHERE merchant_id = ANY(%s)", (ids,))
    found = {r["merchant_id"]: FeePlan.from_list(r["rules"]) for r in await cur.fetchall()}
    return {m: found.get(m, DEFAULT_PLAN) for m in ids}


async def get_plan(conn: Conn, merchant_id: str) -> dict[str, Any]:
    cur = await conn.execute("SELECT rules FROM fee_plans WHERE merchant_id = %s", (merchant_id,))
    row = await cur.fetchone()
    if row is None:
        return plan_object(merchant_id, DEFAULT_PLAN, default=True)
    return plan_object(merchant_id, FeePlan.from_list(row["rules"]), default=False)


async def set_plan(conn: Conn, merchant_id: str, body: FeePlanIn) -> dict[str, Any]:
    """Applies to captures from now on; payables already made keep the terms they were made with."""
    plan = body.plan()
    await conn.execute(
        "INSERT INTO fee_plans (merchant_id, rules) VALUES (%s, %s)"
        " ON CONFLICT (merchant_id) DO UPDATE SET rules = excluded.rules, updated = now()",
        (merchant_id, Jsonb(plan.as_list())),
    )
    return plan_object(merchant_id, plan, default=False)


async def reset_plan(conn: Conn, merchant_id: str) -> dict[str, Any]:
    await conn.execute("DELETE FROM fee_plans WHERE merchant_id = %s", (merchant_id,))
    return plan_object(merchant_id, DEFAULT_PLAN, default=True)
