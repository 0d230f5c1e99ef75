"""Fee plans per merchant: read (the default when none is set), validate and set (admin API)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from tender.domain.fees import ANY, DEFAULT_PLAN, FeePlan, FeeRule
from tender.domain.money import MAX_AMOUNT, normalize_currency
from tender.domain.money_models import MerchantFeePlan
from tender.errors import InvalidJson, NotFound
from tender.store import fee_plans as store
from tender.store import merchants as merchant_store
from tender.store.db import Conn, Database

MAX_PERCENT_PLACES = 4
_PERCENT_STEP = Decimal(1).scaleb(-MAX_PERCENT_PLACES)
# ASCII digits only (Python's \d and Decimal() also take other scripts' digits), no sign, exponent,
# underscore or blank; a bounded length, so a huge string costs nothing.
_PERCENT_TEXT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,16})?", re.ASCII)
_PERCENT_SCHEMA = {  # what parse_percent takes, for the OpenAPI document (pydantic's Decimal schema is unbounded)
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": 100},
        {"type": "string", "maxLength": 20, "pattern": f"^{_PERCENT_TEXT.pattern}$"},
    ]
}
_PERCENT_FORMS = 'percent must be a number or a decimal string from 0 to 100, such as 2.9 or "2.9"'


def parse_percent(value: object) -> Decimal:
    """A fee percent, exactly: an int, a Decimal (a JSON number read by `loads_exact`) or a decimal string;
    never a float (its binary value is not the number the client wrote) nor a boolean (JSON `true` is not 1).
    Within 0..100 with at most 4 decimal places."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise ValueError(_PERCENT_FORMS)
    if isinstance(value, str):
        if not _PERCENT_TEXT.fullmatch(value):
            raise ValueError(_PERCENT_FORMS)
        value = Decimal(value)
    percent = Decimal(value)
    if not percent.is_finite() or not 0 <= percent <= 100:
        raise ValueError("percent must be between 0 and 100")
    # Compared exactly (normalize() would round to the context's 28 digits first): "2.50" has 2.5's places.
    places = percent.quantize(_PERCENT_STEP)
    if places != percent:
        raise ValueError(f"percent takes at most {MAX_PERCENT_PLACES} decimal places")
    return places.normalize() if places else Decimal(0)  # "-0" is 0


def loads_exact(raw: bytes) -> Any:
    """A JSON body with its numbers exact: fractions as Decimal, integers as int (orjson gives floats for
    both beyond 64 bits). NaN and Infinity, which json accepts and JSON does not, are refused."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=refuse)
    except (ValueError, RecursionError):
        raise InvalidJson("body: the request body is not valid JSON", param="body") from None


class FeeRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_method: Literal["card", "upi", "wallet", "netbanking", "bnpl", "*"]
    funding: Literal["credit", "debit", "other", "*"] = "*"
    percent: Annotated[
        Decimal,
        BeforeValidator(parse_percent),
        Field(description='0 to 100, at most 4 decimal places: a JSON number or a string such as "2.9"'),
        WithJsonSchema(_PERCENT_SCHEMA),
    ]
    fixed: dict[str, Annotated[int, Field(ge=0, le=MAX_AMOUNT)]] = Field(
        default_factory=dict, max_length=200, description="Minor units per currency code (at most 200 currencies)."
    )
    delay_days: Annotated[int, Field(ge=0, le=3650)]
    starts: Literal["waiting_funds", "paid"]

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
            tuple(FeeRule(r.payment_method, r.funding, r.percent, r.delay_days, r.starts, r.fixed) for r in self.rules)
        )


async def plans_for(conn: Conn, merchant_ids: Iterable[str]) -> dict[str, FeePlan]:
    """Each merchant's plan; the default for merchants without one."""
    ids = sorted(set(merchant_ids))
    found = await store.plans_of(conn, ids)
    return {m: found.get(m, DEFAULT_PLAN) for m in ids}


async def get_plan(db: Database, merchant_id: str) -> MerchantFeePlan:
    """The merchant's plan, `default` when it has none of its own; 404 for an unknown merchant."""
    async with db.connection() as conn:
        await _known_merchant(conn, merchant_id)
        plan = await store.get(conn, merchant_id)
    return MerchantFeePlan(merchant_id, plan or DEFAULT_PLAN, default=plan is None)


async def set_plan(db: Database, merchant_id: str, body: FeePlanIn) -> MerchantFeePlan:
    """Applies to captures from now on; payables already made keep the terms they were made with."""
    plan = body.plan()
    async with db.transaction() as conn:
        await _known_merchant(conn, merchant_id)
        await store.put(conn, merchant_id, plan)
    return MerchantFeePlan(merchant_id, plan, default=False)


async def reset_plan(db: Database, merchant_id: str) -> MerchantFeePlan:
    """Back to the default plan."""
    async with db.transaction() as conn:
        await _known_merchant(conn, merchant_id)
        await store.delete(conn, merchant_id)
    return MerchantFeePlan(merchant_id, DEFAULT_PLAN, default=True)


async def _known_merchant(conn: Conn, merchant_id: str) -> None:
    if await merchant_store.get_merchant(conn, merchant_id) is None:
        raise NotFound("No such merchant.", param="id")
