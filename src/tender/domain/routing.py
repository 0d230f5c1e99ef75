"""Routing rules: which processors a new payment may run on, in order, chosen from its merchant's rules.

A merchant's rules are an ordered list; the first whose conditions all hold for the payment wins (a rule
without conditions matches every payment), and no match means the default (TENDER_DEFAULT_PROCESSOR).
A rule's `processors` is the order to try them in; its optional `split` sends a share of payments to each
named processor first (a deterministic draw from the payment id, so a retried acceptance or a replay picks
the same one), the rest of the list following in its own order as fallbacks.

Pure: the rules are validated here from their JSON (`parse_rules`, naming the field as `rules[i].x`), and
the service (services/routing.py) checks the names against the processors that are on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from tender.domain import money
from tender.domain.errors import ValidationFailed

MethodType = Literal["card", "upi", "wallet", "netbanking", "bnpl"]
# The networks domain/cards.card_brand tells apart ("unknown" is not something a rule can ask for).
CardBrand = Literal["visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay"]
METHOD_TYPES: Final[tuple[str, ...]] = get_args(MethodType)
CARD_BRANDS: Final[tuple[str, ...]] = get_args(CardBrand)

# Processors that take cards and nothing else (processors/stripe.py: PaymentIntents from a vaulted card).
CARD_ONLY_PROCESSORS: Final = frozenset({"stripe"})

MAX_RULES: Final = 50
MAX_PROCESSORS: Final = 10
MAX_NAME_LENGTH: Final = 64
_CONDITIONS: Final = ("payment_method_type", "currency", "card_brand", "amount_min", "amount_max")
_FIELDS: Final = frozenset({*_CONDITIONS, "processors", "split"})


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """One rule: conditions (None: any) and the processors to try, in order. `split` pairs each processor
    that takes a share of first tries with its percent, in `processors` order; the percents sum to 100."""

    processors: tuple[str, ...]
    payment_method_type: str | None = None
    currency: str | None = None
    card_brand: str | None = None
    amount_min: int | None = None  # inclusive, minor units of the payment's currency
    amount_max: int | None = None  # inclusive
    split: tuple[tuple[str, int], ...] | None = None

    def matches(self, *, method_type: str, currency: str, card_brand: str | None, amount: int) -> bool:
        return (
            (self.payment_method_type is None or self.payment_method_type == method_type)
            and (self.currency is None or self.currency == currency)
            and (self.card_brand is None or self.card_brand == card_brand)
            and (self.amount_min is None or amount >= self.amount_min)
            and (self.amount_max is None or amount <= self.amount_max)
        )

    def order(self, payment_id: str) -> list[str]:
        """The processors in the order this payment tries them: the split's pick first, then the rest."""
        if self.split is None:
            return list(self.processors)
        bucket = draw(payment_id)
        first = self.split[-1][0]
        total = 0
        for name, percent in self.split:
            total += percent
            if bucket < total:
                first = name
                break
        return [first, *(p for p in self.processors if p != first)]

    def to_json(self) -> dict[str, Any]:
        """The rule as the API shows and the database keeps it (absent conditions left out)."""
        out: dict[str, Any] = {}
        for name in _CONDITIONS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["processors"] = list(self.processors)
        if self.split is not None:
            out["split"] = dict(self.split)
        return out


@dataclass(frozen=True, slots=True)
class RoutingRules:
    """A merchant's rules, first match wins."""

    rules: tuple[RoutingRule, ...] = ()

    def to_json(self) -> list[dict[str, Any]]:
        return [rule.to_json() for rule in self.rules]

    def processors(self) -> set[str]:
        """Every processor any rule names."""
        return {name for rule in self.rules for name in rule.processors}


def draw(payment_id: str) -> int:
    """0..99 from the payment id: deterministic, and uniform (SHA-256's first 8 bytes mod 100; the bias of
    2**64 mod 100 is far below anything measurable)."""
    digest = hashlib.sha256(payment_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def route_for(
    rules: RoutingRules | None,
    *,
    payment_id: str,
    method_type: str,
    currency: str,
    card_brand: str | None,
    amount: int,
    default: Sequence[str],
) -> list[str]:
    """The processors a payment may run on, in order: the first matching rule's, else `default`. Not yet
    filtered by what is on or can take the method (the service does that)."""
    for rule in rules.rules if rules is not None else ():
        if rule.matches(method_type=method_type, currency=currency, card_brand=card_brand, amount=amount):
            return rule.order(payment_id)
    return list(default)


def usable(route: Sequence[str], *, on: Collection[str], card_only: Collection[str], method_type: str) -> list[str]:
    """`route` without the processors that are off, or that take cards only when the payment is not a card.
    Raises ValidationFailed when nothing is left: naming `payment_method.type` when the method emptied it,
    else `processor`. Messages quote no names from the request: only the processors that are on."""
    running = [p for p in route if p in on]
    left = running if method_type == "card" else [p for p in running if p not in card_only]
    if left:
        return left
    if running:
        names = ", ".join(running)
        raise ValidationFailed(
            f"payment_method.type: this payment's route has only processors that take cards ({names})",
            param="payment_method.type",
        )
    raise ValidationFailed(
        "processor: none of the processors this payment's routing rule names is available; available: "
        + ", ".join(sorted(on)),
        param="processor",
    )


# -- validation of a merchant's rules as sent (JSON) ---------------------------------------------------------


def _fail(param: str, why: str) -> ValidationFailed:
    return ValidationFailed(f"{param}: {why}", param=param)


def _int(value: object, param: str, *, minimum: int) -> int:
    # bool is an int in Python, never in JSON
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(param, "must be an integer")
    if value < minimum or value > money.MAX_AMOUNT:
        raise _fail(param, f"must be between {minimum} and {money.MAX_AMOUNT}")
    return value


def _choice(value: object, param: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _fail(param, "must be one of " + ", ".join(allowed))
    return value


def _processors(value: object, param: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(param, f"must be a list of 1 to {MAX_PROCESSORS} processor names")
    if len(value) > MAX_PROCESSORS:
        raise _fail(param, f"at most {MAX_PROCESSORS} processors")
    names: list[str] = []
    for j, name in enumerate(value):
        at = f"{param}[{j}]"
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise _fail(at, f"must be a processor name (1 to {MAX_NAME_LENGTH} characters)")
        if name in names:
            raise _fail(at, "names a processor already in the list")
        names.append(name)
    return tuple(names)


def _split(value: object, param: str, processors: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, Mapping) or not value:
        raise _fail(param, "must be an object of processor names to percents")
    if not set(value) <= set(processors):
        raise _fail(param, "may name only processors of this rule's processors")
    shares: list[tuple[str, int]] = []
    for name in processors:  # the rule's own order, whatever order the object had
        if name in value:
            percent = value[name]
            if not isinstance(percent, int) or isinstance(percent, bool) or not 1 <= percent <= 100:
                raise _fail(param, "each percent must be an integer from 1 to 100")
            shares.append((name, percent))
    if sum(p for _, p in shares) != 100:
        raise _fail(param, "the percents must sum to 100")
    return tuple(shares)


def parse_rule(raw: object, param: str) -> RoutingRule:
    if not isinstance(raw, Mapping):
        raise _fail(param, "must be an object")
    for key in raw:
        if key not in _FIELDS:
            # only names Tender knows are shown: the key came from the request
            raise _fail(param, "has an unknown field; a rule takes " + ", ".join(sorted(_FIELDS)))
    if "processors" not in raw:
        raise _fail(f"{param}.processors", "required")
    processors = _processors(raw["processors"], f"{param}.processors")
    method = raw.get("payment_method_type")
    if method is not None:
        method = _choice(method, f"{param}.payment_method_type", METHOD_TYPES)
    currency = raw.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or len(currency) != 3:
            raise _fail(f"{param}.currency", "must be an ISO 4217 code such as BRL")
        currency = money.normalize_currency(currency, param=f"{param}.currency")
    brand = raw.get("card_brand")
    if brand is not None:
        brand = _choice(brand, f"{param}.card_brand", CARD_BRANDS)
        if method not in (None, "card"):
            raise _fail(f"{param}.card_brand", "applies to card payments only (payment_method_type is not card)")
    low = raw.get("amount_min")
    if low is not None:
        low = _int(low, f"{param}.amount_min", minimum=0)
    high = raw.get("amount_max")
    if high is not None:
        high = _int(high, f"{param}.amount_max", minimum=low or 0)
    split = raw.get("split")
    if split is not None:
        split = _split(split, f"{param}.split", processors)
    return RoutingRule(
        processors=processors,
        payment_method_type=method,
        currency=currency,
        card_brand=brand,
        amount_min=low,
        amount_max=high,
        split=split,
    )


def parse_rules(raw: object, param: str = "rules") -> RoutingRules:
    """A merchant's rules from their JSON list; ValidationFailed naming the first bad field."""
    if not isinstance(raw, list):
        raise _fail(param, "must be a list of rules")
    if len(raw) > MAX_RULES:
        raise _fail(param, f"at most {MAX_RULES} rules")
    return RoutingRules(tuple(parse_rule(item, f"{param}[{i}]") for i, item in enumerate(raw)))
