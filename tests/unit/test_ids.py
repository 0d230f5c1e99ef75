from __future__ import annotations

import time

import pytest

from tender.domain import ids
from tender.domain.ids import has_prefix, new_id

ALL_PREFIXES = [
    ids.MERCHANT, ids.PAYMENT, ids.REFUND, ids.PAYABLE, ids.SETTLEMENT, ids.CUSTOMER, ids.PAYMENT_METHOD,
    ids.CHECKOUT_SESSION, ids.EVENT, ids.WEBHOOK_ENDPOINT, ids.SUBSCRIPTION, ids.DEAD_LETTER, ids.ATTEMPT,
    ids.VAULT_CARD,
]  # fmt: skip


def test_prefix_values_match_the_api_contract() -> None:
    assert ALL_PREFIXES == [
        "mer", "pay", "re", "pyb", "stl", "cus", "pm", "cs", "evt", "we", "sub", "dl", "att", "card",
    ]  # fmt: skip


@pytest.mark.parametrize("prefix", ALL_PREFIXES)
def test_new_id_carries_its_prefix(prefix: str) -> None:
    value = new_id(prefix)
    assert value.startswith(prefix + "_")
    assert len(value) == len(prefix) + 1 + 26
    assert has_prefix(value, prefix)


def test_ids_are_unique() -> None:
    made = {new_id("pay") for _ in range(10_000)}
    assert len(made) == 10_000


def test_ids_sort_by_creation_time() -> None:
    first = new_id("pay")
    time.sleep(0.002)
    second = new_id("pay")
    assert first < second


def test_has_prefix_checks_the_kind_and_shape() -> None:
    value = new_id("pay")
    body = value.removeprefix("pay_")
    assert not has_prefix(value, "pm")
    assert not has_prefix(value, "pa")
    assert not has_prefix("re_" + body, "pay")
    assert not has_prefix("pay_" + body.lower(), "pay")
    assert not has_prefix("pay_" + body[:-1], "pay")
    assert not has_prefix("pay_" + body + "0", "pay")
    assert not has_prefix("pay_" + body[:-1] + "U", "pay")  # U is not Crockford base32
    assert not has_prefix("pay_8" + body[1:], "pay")  # would overflow 128 bits
    assert not has_prefix("pay" + body, "pay")
    assert not has_prefix("", "pay")
    assert not has_prefix(12, "pay")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "Pay", "pay_", "p-y", "pay1"])
def test_new_id_refuses_odd_prefixes(bad: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_id(bad)
