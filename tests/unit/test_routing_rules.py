"""domain/routing.py: which rule matches, the split's draw (deterministic, within tolerance of its percents),
what is left once processors off or card-only ones are dropped, and validation naming the field."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tender.domain import cards, methods
from tender.domain.errors import ValidationFailed
from tender.domain.ids import PAYMENT, new_id
from tender.domain.routing import (
    CARD_BRANDS,
    CARD_ONLY_PROCESSORS,
    METHOD_TYPES,
    RoutingRules,
    draw,
    parse_rules,
    route_for,
    usable,
)

DEFAULT = ["simulator"]


def route(rules: list[dict[str, Any]] | None, *, payment_id: str = "pay_x", **payment: Any) -> list[str]:
    facts: dict[str, Any] = {"method_type": "card", "currency": "BRL", "card_brand": "visa", "amount": 1000}
    facts.update(payment)
    parsed = parse_rules(rules) if rules is not None else None
    return route_for(parsed, payment_id=payment_id, default=DEFAULT, **facts)


RULES: list[dict[str, Any]] = [
    {"payment_method_type": "upi", "processors": ["sim_upi"]},
    {"currency": "USD", "card_brand": "amex", "processors": ["stripe", "simulator"]},
    {"currency": "usd", "amount_min": 100, "amount_max": 5000, "processors": ["sim_small"]},
    {"currency": "USD", "processors": ["sim_usd", "simulator"]},
    {"amount_min": 1_000_000, "processors": ["sim_big"]},
]


@pytest.mark.parametrize(
    ("payment", "expected"),
    [
        ({"method_type": "upi", "card_brand": None, "currency": "INR"}, ["sim_upi"]),
        ({"currency": "USD", "card_brand": "amex"}, ["stripe", "simulator"]),
        ({"currency": "USD", "amount": 100}, ["sim_small"]),  # both ends inclusive
        ({"currency": "USD", "amount": 5000}, ["sim_small"]),
        ({"currency": "USD", "amount": 5001}, ["sim_usd", "simulator"]),
        ({"currency": "USD", "amount": 99}, ["sim_usd", "simulator"]),
        ({"currency": "BRL", "amount": 1_000_000}, ["sim_big"]),
        ({"currency": "BRL", "amount": 999_999}, DEFAULT),  # no rule matches: the default
        ({"method_type": "wallet", "card_brand": None, "currency": "BRL"}, DEFAULT),
    ],
)
def test_the_first_matching_rule_wins_else_the_default(payment: dict[str, Any], expected: list[str]) -> None:
    assert route(RULES, **payment) == expected


def test_no_rules_and_empty_rules_mean_the_default() -> None:
    assert route(None) == DEFAULT
    assert route([]) == DEFAULT
    assert route([], currency="USD") == DEFAULT


def test_a_rule_without_conditions_matches_everything() -> None:
    rules = [{"processors": ["a", "b"]}]
    assert route(rules) == ["a", "b"]
    assert route(rules, method_type="bnpl", card_brand=None, currency="JPY", amount=1) == ["a", "b"]


def test_the_split_is_deterministic_per_payment_and_within_tolerance_over_10000_ids() -> None:
    rules = [{"processors": ["a", "b", "c"], "split": {"b": 30, "a": 70}}]
    firsts: Counter[str] = Counter()
    for _ in range(10_000):
        payment_id = new_id(PAYMENT)
        chosen = route(rules, payment_id=payment_id)
        assert chosen == route(rules, payment_id=payment_id)  # the same payment: the same draw
        # The pick first, then the rest of the list in its own order: every processor is a fallback.
        assert sorted(chosen) == ["a", "b", "c"]
        assert chosen[1:] == [p for p in ["a", "b", "c"] if p != chosen[0]]
        firsts[chosen[0]] += 1
    assert firsts["c"] == 0  # not in the split: only ever a fallback
    # Binomial(10000, 0.3): sd ~ 46; 4 sd either way.
    assert 2816 <= firsts["b"] <= 3184, firsts
    assert firsts["a"] + firsts["b"] == 10_000


def test_the_draw_is_uniform_over_buckets_and_stable() -> None:
    buckets = Counter(draw(new_id(PAYMENT)) for _ in range(20_000))
    assert set(buckets) == set(range(100))
    assert max(buckets.values()) < 320 and min(buckets.values()) > 100  # mean 200, sd ~ 14
    assert draw("pay_fixed") == draw("pay_fixed") == 19  # SHA-256 based: the same in every process and version


def test_a_split_of_one_hundred_always_picks_that_one() -> None:
    rules = [{"processors": ["a", "b"], "split": {"b": 100}}]
    assert {route(rules, payment_id=new_id(PAYMENT))[0] for _ in range(200)} == {"b"}


def test_rules_round_trip_through_their_json() -> None:
    parsed = parse_rules(RULES)
    again = parse_rules(parsed.to_json())
    assert again == parsed
    small = {"currency": "USD", "amount_min": 100, "amount_max": 5000, "processors": ["sim_small"]}
    assert parsed.to_json()[2] == small  # the currency upper-cased, absent conditions left out
    split = parse_rules([{"processors": ["a", "b"], "split": {"b": 40, "a": 60}}])
    assert split.to_json() == [{"processors": ["a", "b"], "split": {"a": 60, "b": 40}}]  # in the list's order
    assert parsed.processors() == {"sim_upi", "stripe", "simulator", "sim_small", "sim_usd", "sim_big"}
    assert RoutingRules().to_json() == []


def test_usable_drops_processors_off_and_card_only_ones_for_other_methods() -> None:
    on = {"simulator", "stripe", "sim_b"}
    assert usable(["stripe", "gone", "simulator"], on=on, card_only=CARD_ONLY_PROCESSORS, method_type="card") == [
        "stripe",
        "simulator",
    ]
    assert usable(["stripe", "sim_b"], on=on, card_only=CARD_ONLY_PROCESSORS, method_type="upi") == ["sim_b"]
    with pytest.raises(ValidationFailed) as method:
        usable(["stripe", "gone"], on=on, card_only=CARD_ONLY_PROCESSORS, method_type="wallet")
    assert method.value.param == "payment_method.type"
    with pytest.raises(ValidationFailed) as off:
        usable(["gone", "also_gone"], on=on, card_only=CARD_ONLY_PROCESSORS, method_type="card")
    assert off.value.param == "processor"
    assert "gone" not in off.value.message  # names from the rules that are not on are not shown


def test_the_method_types_and_brands_are_tenders_own() -> None:
    assert set(METHOD_TYPES) == {"card", *methods.APM_TYPES}
    # Every brand a card can have (but "unknown") may be routed on: one leading-digits prefix of each.
    prefixes = ["4000", "5100", "3400", "6011", "3528", "3600", "6200", "9999"]
    assert {cards.card_brand(p) for p in prefixes} == {*CARD_BRANDS, "unknown"}


def rule(**fields: Any) -> dict[str, Any]:
    return {"processors": ["a", "b"], **fields}


BAD: list[tuple[str, Any, str]] = [
    ("not a list", {"processors": ["a"]}, "rules"),
    ("too many rules", [rule()] * 51, "rules"),
    ("a rule not an object", [rule(), "a"], "rules[1]"),
    ("unknown field", [rule(priority=1)], "rules[0]"),
    ("no processors", [{"currency": "BRL"}], "rules[0].processors"),
    ("empty processors", [rule(processors=[])], "rules[0].processors"),
    ("eleven processors", [rule(processors=[f"p{i}" for i in range(11)])], "rules[0].processors"),
    ("duplicate processor", [rule(), rule(processors=["a", "b", "a"])], "rules[1].processors[2]"),
    ("empty name", [rule(processors=["a", ""])], "rules[0].processors[1]"),
    ("name not a string", [rule(processors=["a", 7])], "rules[0].processors[1]"),
    ("long name", [rule(processors=["x" * 65])], "rules[0].processors[0]"),
    ("method", [rule(payment_method_type="cash")], "rules[0].payment_method_type"),
    ("currency", [rule(currency="XXY")], "rules[0].currency"),
    ("currency type", [rule(currency=986)], "rules[0].currency"),
    ("brand", [rule(card_brand="elo")], "rules[0].card_brand"),
    ("brand on upi", [rule(payment_method_type="upi", card_brand="visa")], "rules[0].card_brand"),
    ("negative min", [rule(amount_min=-1)], "rules[0].amount_min"),
    ("float min", [rule(amount_min=1.5)], "rules[0].amount_min"),
    ("bool max", [rule(amount_max=True)], "rules[0].amount_max"),
    ("max below min", [rule(amount_min=500, amount_max=499)], "rules[0].amount_max"),
    ("split names another", [rule(split={"a": 50, "z": 50})], "rules[0].split"),
    ("split short of 100", [rule(split={"a": 50, "b": 49})], "rules[0].split"),
    ("split over 100", [rule(split={"a": 60, "b": 50})], "rules[0].split"),
    ("split zero", [rule(split={"a": 100, "b": 0})], "rules[0].split"),
    ("split not an int", [rule(split={"a": 50.0, "b": 50})], "rules[0].split"),
    ("split empty", [rule(split={})], "rules[0].split"),
]


@pytest.mark.parametrize(("raw", "param"), [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_invalid_rules_name_the_field(raw: Any, param: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_rules(raw)
    assert caught.value.param == param
    assert caught.value.message.startswith(param)


def test_the_limits_themselves_are_taken() -> None:
    fifty = parse_rules([rule(processors=[f"p{i}" for i in range(10)])] * 50)
    assert len(fifty.rules) == 50 and len(fifty.rules[0].processors) == 10
    edge = parse_rules([rule(amount_min=0, amount_max=0, split={"a": 1, "b": 99}, card_brand="amex")])
    assert edge.rules[0].amount_max == 0 and edge.rules[0].split == (("a", 1), ("b", 99))
