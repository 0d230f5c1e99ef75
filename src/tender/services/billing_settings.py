"""A merchant's billing settings: when a failed renewal is retried (dunning) and what happens after the last try.

A subscription copies them when it is created (domain/recurring.py), so a change applies to new subscriptions
and leaves running ones as they were, as Stripe's subscription settings do.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tender.errors import NotFound
from tender.store import billing_settings as store
from tender.store.db import Database

MAX_RETRIES = 8  # Stripe's Smart Retries stop at 8 tries too
MAX_DAY = 60  # a retry two months after the due date is already past the next period of a monthly plan


class BillingSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    dunning_days: list[int] = Field(
        max_length=MAX_RETRIES,
        description="Days after a period's due time at which a failed renewal is tried again, increasing"
        f" (1..{MAX_DAY}); [] gives up after the first failure.",
    )
    on_final_failure: Literal["unpaid", "cancel"] = Field(
        description="After the last try: the subscription becomes `unpaid`, or is `canceled`."
    )

    @field_validator("dunning_days")
    @classmethod
    def _increasing(cls, days: list[int]) -> list[int]:
        if any(not 1 <= d <= MAX_DAY for d in days):
            raise ValueError(f"each day is between 1 and {MAX_DAY}")
        if any(b <= a for a, b in pairwise(days)):
            raise ValueError("the days must increase")
        return days


def settings_object(merchant_id: str, dunning_days: list[int], on_final_failure: str) -> dict[str, Any]:
    return {
        "object": "billing_settings",
        "merchant": merchant_id,
        "dunning_days": dunning_days,
        "on_final_failure": on_final_failure,
    }


async def get(db: Database, merchant_id: str) -> dict[str, Any]:
    async with db.connection() as conn:
        found = await store.get(conn, merchant_id)
    if found is None:
        raise NotFound("No such merchant.", param="id")
    return settings_object(merchant_id, *found)


async def put(db: Database, merchant_id: str, body: BillingSettingsIn) -> dict[str, Any]:
    async with db.transaction() as conn:
        if not await store.put(conn, merchant_id, body.dunning_days, body.on_final_failure):
            raise NotFound("No such merchant.", param="id")
    return settings_object(merchant_id, body.dunning_days, body.on_final_failure)
