"""Merchants' routing rules (issue 14): saved and shown by the admin API, applied when a payment is accepted.

Saving checks the rules' shape (domain/routing.py: `rules[i].field` named in the 400) and that every processor
they name is on in this Tender and can take what the rule routes (a rule for an alternative method listing a
card-only processor is refused). Acceptance reads the merchant's rules with one primary-key query in its own
transaction, and keeps only the processors that are on and can take the payment's method.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tender.domain import routing
from tender.domain.money import MAX_AMOUNT
from tender.domain.routing import CARD_ONLY_PROCESSORS, CardBrand, MethodType, RoutingRules
from tender.errors import InvalidRequest, NotFound
from tender.processors.registry import FACTORIES as KNOWN_PROCESSORS
from tender.services.objects import iso
from tender.services.validation import parse
from tender.store import merchants as merchant_store
from tender.store import routing as store
from tender.store.db import Conn, Database

ProcessorName = Annotated[str, Field(min_length=1, max_length=routing.MAX_NAME_LENGTH)]


class RoutingRuleIn(BaseModel):
    """One rule as sent: the shape only; domain/routing.parse_rules checks the rest (split, amount range)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    payment_method_type: MethodType | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3, description="ISO 4217, e.g. BRL")
    card_brand: CardBrand | None = Field(default=None, description="Card payments of this network only.")
    amount_min: int | None = Field(default=None, ge=0, le=MAX_AMOUNT, description="Inclusive, minor units.")
    amount_max: int | None = Field(default=None, ge=0, le=MAX_AMOUNT, description="Inclusive, minor units.")
    processors: list[ProcessorName] = Field(
        min_length=1, max_length=routing.MAX_PROCESSORS, description="Tried in this order; no duplicates."
    )
    split: dict[ProcessorName, Annotated[int, Field(ge=1, le=100)]] | None = Field(
        default=None,
        max_length=routing.MAX_PROCESSORS,
        description="Percent of payments that try each of these processors first (they sum to 100); the rest "
        "of `processors` follow in order.",
    )


class RoutingIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    rules: list[RoutingRuleIn] = Field(
        max_length=routing.MAX_RULES, description="First match wins; none: the default processor."
    )


def routing_object(
    merchant_id: str, rules: RoutingRules, default: Sequence[str], updated: datetime | None
) -> dict[str, Any]:
    return {
        "object": "routing",
        "merchant": merchant_id,
        "rules": rules.to_json(),
        "default": list(default),
        "updated": iso(updated) if updated is not None else None,
    }


def check_processors(rules: RoutingRules, on: Collection[str]) -> None:
    """Every processor named is on and can take the rule's payments; InvalidRequest naming the first that is
    not. Only the processors that are on are listed in the message (never a name from the request)."""
    for i, rule in enumerate(rules.rules):
        for j, name in enumerate(rule.processors):
            param = f"rules[{i}].processors[{j}]"
            if name not in on:
                state = "an unknown processor" if name not in KNOWN_PROCESSORS else "a processor that is off here"
                raise InvalidRequest(f"{param}: {state}; available: {', '.join(sorted(on))}", param=param)
            if rule.payment_method_type not in (None, "card") and name in CARD_ONLY_PROCESSORS:
                raise InvalidRequest(
                    f"{param}: {name} takes cards only, and this rule routes {rule.payment_method_type} payments",
                    param=param,
                )


async def _merchant(conn: Conn, merchant_id: str) -> None:
    if await merchant_store.get_merchant(conn, merchant_id) is None:
        raise NotFound("No such merchant.", param="id")


async def get(db: Database, merchant_id: str, *, default: Sequence[str]) -> dict[str, Any]:
    """The merchant's routing (`rules: []` and `updated: null` when it has none); 404 for an unknown merchant."""
    async with db.connection() as conn:
        await _merchant(conn, merchant_id)
        row = await store.get(conn, merchant_id)
    if row is None:
        return routing_object(merchant_id, RoutingRules(), default, None)
    return routing_object(merchant_id, routing.parse_rules(row.rules), default, row.updated)


async def put(
    db: Database, merchant_id: str, payload: Any, *, on: Collection[str], default: Sequence[str]
) -> dict[str, Any]:
    """Replace the merchant's rules (validated first: nothing is written on a 400)."""
    parse(RoutingIn, payload)  # the documented shape, with pydantic's field names
    rules = routing.parse_rules(payload["rules"])
    check_processors(rules, on)
    async with db.transaction() as conn:
        await _merchant(conn, merchant_id)
        row = await store.put(conn, merchant_id, rules.to_json())
    return routing_object(merchant_id, rules, default, row.updated)


async def rules_of(conn: Conn, merchant_id: str) -> RoutingRules | None:
    """The merchant's routing rules, None if it has none (one primary-key read, in the acceptance's
    transaction); services/payments.route_of applies them."""
    row = await store.get(conn, merchant_id)
    return routing.parse_rules(row.rules) if row is not None else None
