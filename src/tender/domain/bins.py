"""What Tender knows of a card from its number alone: its funding by BIN (issuer identification number).

Funding decides the fee and when the money is available (domain/fees.py), so it is never taken from a
merchant's request: it comes from this table or, better, from the processor's authorization answer, which
wins (the issuer knows each account; a BIN table only knows ranges). The table is small on purpose: the
test ranges of API.md and the well-known processor test cards. A BIN nobody knows is credit, as processors
treat it, which is also the dearer and slower fee: guessing wrong can only cost the merchant, not us.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

Funding = Literal["credit", "debit", "prepaid"]
_FUNDING_NAMES: Final[dict[str, Funding]] = {"credit": "credit", "debit": "debit", "prepaid": "prepaid"}
FUNDINGS: Final[frozenset[str]] = frozenset(_FUNDING_NAMES)
UNKNOWN_BIN_FUNDING: Final[Funding] = "credit"

# Prefix -> funding; the longest matching prefix wins, so one account can be told apart from its range.
FUNDING_BY_PREFIX: Final[dict[str, Funding]] = {
    "424242": "credit",  # visa credit (API.md)
    "555555": "credit",  # mastercard credit (API.md)
    "400005": "debit",  # visa debit (API.md's debit test card)
    "520082": "debit",  # mastercard debit test card
    "510510": "prepaid",  # mastercard prepaid test card
}


def funding_of_number(number: str, table: Mapping[str, Funding] = FUNDING_BY_PREFIX) -> Funding:
    """The funding the BIN table gives a card number (digits only), else credit."""
    matches = [prefix for prefix in table if number.startswith(prefix)]
    if not matches:
        return UNKNOWN_BIN_FUNDING
    return table[max(matches, key=len)]


def known_funding(value: object) -> Funding | None:
    """A processor's funding answer if it is one Tender knows; anything else counts as no answer."""
    return _FUNDING_NAMES.get(value) if isinstance(value, str) else None
