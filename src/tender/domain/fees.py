"""Fee plans and the payable a capture earns: pure rules, no I/O.

A plan is a list of rules, each for a payment method (`card`, `upi`, ..., or `*`) and a funding (`credit`,
`debit`, `other`, or `*`). A capture takes the first rule matching (method, funding), then (method, `*`),
then (`*`, `*`). The fee is `percent` of the captured amount, rounded half up to the minor unit, plus the
rule's fixed fee in the capture's currency (minor units; none if the currency is not listed), never more
than the amount. The payable is due `delay_days` after the capture date and starts `paid` (money available
at once, as debit cards are by default) or `waiting_funds`.

Amounts are integers in minor units, so rounding "to the minor unit" is rounding to an integer whatever
the currency's exponent (JPY has none, BHD three): 0.5 of a yen and 0.5 of a fils both round up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

PayableStatus = Literal["waiting_funds", "paid"]

ANY = "*"
FUNDINGS = ("credit", "debit", "other")


def funding_of(payment_method: Mapping[str, Any]) -> str:
    """`credit`, `debit` or `other` for a payment's public payment_method.

    The card's funding there came from the BIN table or the processor, never from the merchant. A prepaid
    card is `other`: not debit's money-at-once (prepaid is the card tester's favourite, and no bank account
    stands behind it), not credit's 30 days either; a plan may price it with a `card`/`other` rule. A card
    whose funding is unknown is credit, as an unknown BIN is (domain/bins.py): the dearer, slower terms.
    """
    if payment_method.get("type") == "card":
        funding = str((payment_method.get("card") or {}).get("funding"))
        return {"debit": "debit", "prepaid": "other"}.get(funding, "credit")
    return "other"


def percent_text(percent: Decimal) -> str:
    """A percent as people write it: "10", "2.5", "0" (never "1E+1", "2.50" or "-0")."""
    if percent == 0:
        return "0"
    return format(percent.normalize(), "f")


@dataclass(frozen=True, slots=True)
class FeeRule:
    payment_method: str
    funding: str
    percent: Decimal
    delay_days: int
    starts: PayableStatus
    fixed: Mapping[str, int] = field(default_factory=dict)  # currency -> minor units

    def fee(self, amount: int, currency: str) -> int:
        variable = (Decimal(amount) * self.percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return min(int(variable) + self.fixed.get(currency, 0), amount) if amount > 0 else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "payment_method": self.payment_method,
            "funding": self.funding,
            "percent": percent_text(self.percent),
            "fixed": dict(self.fixed),
            "delay_days": self.delay_days,
            "starts": self.starts,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeeRule:
        return cls(
            payment_method=d["payment_method"],
            funding=d["funding"],
            percent=Decimal(d["percent"]),
            delay_days=int(d["delay_days"]),
            starts=d["starts"],
            fixed={k: int(v) for k, v in (d.get("fixed") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class FeePlan:
    rules: tuple[FeeRule, ...]

    def rule_for(self, payment_method: str, funding: str) -> FeeRule:
        for method, fund in ((payment_method, funding), (payment_method, ANY), (ANY, ANY)):
            for rule in self.rules:
                if rule.payment_method == method and rule.funding == fund:
                    return rule
        raise LookupError(f"the fee plan has no rule for {payment_method}/{funding} and no '*'/'*' rule")

    def as_list(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.rules]

    @classmethod
    def from_list(cls, rules: list[Mapping[str, Any]]) -> FeePlan:
        return cls(tuple(FeeRule.from_dict(r) for r in rules))


# API.md: credit card 5%, waiting_funds, capture date + 30 days; debit card 3%, paid, capture date;
# other methods 2%, waiting_funds, capture date + 2 days.
DEFAULT_PLAN = FeePlan(
    (
        FeeRule("card", "credit", Decimal("5"), 30, "waiting_funds"),
        FeeRule("card", "debit", Decimal("3"), 0, "paid"),
        FeeRule(ANY, ANY, Decimal("2"), 2, "waiting_funds"),
    )
)


@dataclass(frozen=True, slots=True)
class PayableTerms:
    amount: int
    fee: int
    net: int
    payment_date: date
    status: PayableStatus


def payable_terms(
    plan: FeePlan, *, amount: int, currency: str, payment_method: str, funding: str, captured_on: date
) -> PayableTerms:
    """What a capture of `amount` earns the merchant, and when."""
    rule = plan.rule_for(payment_method, funding)
    fee = rule.fee(amount, currency)
    return PayableTerms(amount, fee, amount - fee, captured_on + timedelta(days=rule.delay_days), rule.starts)
