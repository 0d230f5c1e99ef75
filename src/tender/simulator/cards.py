"""What the simulated issuer answers for a card: the test-card table of API.md, then the generic rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

APPROVED = "approved"
DECLINED = "declined"
ACTION_REQUIRED = "action_required"
CANCELED = "canceled"  # only through the cancel endpoint


@dataclass(frozen=True, slots=True)
class Decision:
    status: str
    failure_code: str | None = None
    decline_code: str | None = None
    message: str | None = None


THREE_DS_CARD = "4000002760003184"
# Succeeds the first time it is charged, declined `insufficient_funds` afterwards: a subscription's first
# invoice is paid and its renewals fail (dunning tests). "Once" is per card as the shopper typed it (number,
# expiry, holder name): a test wanting a fresh one changes the holder name. The app keeps the count (store).
SUCCEEDS_ONCE_CARD = "4000000000001117"

TEST_CARDS: dict[str, Decision] = {
    "4000000000000002": Decision(DECLINED, "card_declined", "generic_decline", "The card was declined."),
    "4000000000009995": Decision(DECLINED, "card_declined", "insufficient_funds", "The card has insufficient funds."),
    "4000000000009987": Decision(DECLINED, "card_declined", "lost_card", "The card was reported lost."),
    "4000000000000069": Decision(DECLINED, "expired_card", None, "The card has expired."),
    "4000000000000127": Decision(DECLINED, "incorrect_cvc", None, "The card's security code is incorrect."),
    THREE_DS_CARD: Decision(ACTION_REQUIRED, None, None, "The card requires 3-D Secure authentication."),
}

# The succeeds-once card after its first charge (`decide` answers APPROVED for it: the app asks the store).
DECLINED_AFTER_ONCE = Decision(DECLINED, "card_declined", "insufficient_funds", "The card has insufficient funds.")

CHALLENGE_APPROVED = Decision(APPROVED)
CHALLENGE_FAILED = Decision(DECLINED, "authentication_failed", None, "The cardholder failed 3-D Secure authentication.")


def luhn_valid(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_brand(number: str) -> str:
    two, three, four = int(number[:2]), int(number[:3]), int(number[:4])
    if number.startswith("4"):
        return "visa"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if four == 6011 or two == 65 or 644 <= three <= 649:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if two in (36, 38, 39) or 300 <= three <= 305:
        return "diners"
    return "unknown"


# The simulated issuer's own knowledge of funding, by prefix (longest wins). It knows more than Tender's
# BIN table (tender/domain/bins.py) on purpose: the sub-range 620000000000 holds UnionPay debit accounts in a
# range (620000) whose other cards are credit, so only the processor's answer can tell Tender they are debit.
# (Prefixes only: no whole card number in source outside API.md's test cards.)
FUNDING_BY_PREFIX: dict[str, str] = {
    "400005": "debit",  # visa debit (API.md)
    "520082": "debit",  # mastercard debit test range
    "510510": "prepaid",  # mastercard prepaid test range
    "620000000000": "debit",  # unionpay debit accounts
}


def card_funding(number: str) -> str:
    """credit, debit or prepaid, as the issuer knows it; credit when nothing more is known."""
    matches = [prefix for prefix in FUNDING_BY_PREFIX if number.startswith(prefix)]
    return FUNDING_BY_PREFIX[max(matches, key=len)] if matches else "credit"


def decide(number: str, exp_month: int, exp_year: int, now: datetime | None = None) -> Decision:
    """The issuer's answer. `number` is digits only (the caller validated its shape)."""
    if number in TEST_CARDS:
        return TEST_CARDS[number]
    if not luhn_valid(number):
        return Decision(DECLINED, "incorrect_number", None, "The card number is incorrect.")
    now = now or datetime.now(UTC)
    if (exp_year, exp_month) < (now.year, now.month):
        return Decision(DECLINED, "expired_card", None, "The card has expired.")
    return Decision(APPROVED)
