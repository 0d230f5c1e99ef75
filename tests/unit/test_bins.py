"""The BIN table (domain/bins.py): a card's funding from its number, never from the request."""

from __future__ import annotations

import pytest

from tender.domain.bins import FUNDING_BY_PREFIX, FUNDINGS, Funding, funding_of_number, known_funding
from tender.simulator import cards as simulated_issuer


@pytest.mark.parametrize(
    ("number", "funding"),
    [
        # API.md "Test cards"
        ("4242424242424242", "credit"),
        ("5555555555554444", "credit"),
        ("4000056655665556", "debit"),
        ("4000000000000002", "credit"),
        ("4000002760003184", "credit"),
        # the well-known processor test cards
        ("5200828282828210", "debit"),
        ("5105105105105100", "prepaid"),
        # unknown BINs are credit
        ("6011111111111117", "credit"),
        ("378282246310005", "credit"),
        ("6200000000000047", "credit"),  # only its issuer knows it is debit (tests/security/test_funding_from_bin)
        ("", "credit"),
    ],
)
def test_funding_of_a_number(number: str, funding: str) -> None:
    assert funding_of_number(number) == funding


def test_the_longest_prefix_wins() -> None:
    table: dict[str, Funding] = {**FUNDING_BY_PREFIX, "4000056655665556": "prepaid"}  # one account in a range
    assert funding_of_number("4000056655665556", table) == "prepaid"
    assert funding_of_number("4000050000000000", table) == "debit"


def test_every_entry_is_a_known_funding() -> None:
    assert set(FUNDING_BY_PREFIX.values()) <= FUNDINGS == {"credit", "debit", "prepaid"}
    assert all(prefix.isascii() and prefix.isdigit() and len(prefix) >= 6 for prefix in FUNDING_BY_PREFIX)


def test_tender_and_the_simulated_issuer_agree_on_the_test_ranges() -> None:
    # The issuer may know more accounts (its answer wins), never contradict Tender's ranges.
    for prefix, funding in FUNDING_BY_PREFIX.items():
        assert simulated_issuer.card_funding(prefix + "0" * (16 - len(prefix))) == funding, prefix


@pytest.mark.parametrize(
    ("answer", "funding"),
    [("credit", "credit"), ("debit", "debit"), ("prepaid", "prepaid"), ("DEBIT", None), ("", None), (None, None),
     (1, None), (["debit"], None), ("charge", None)],
)  # fmt: skip
def test_a_processor_answer_counts_only_when_known(answer: object, funding: str | None) -> None:
    assert known_funding(answer) == funding
