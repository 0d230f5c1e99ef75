"""Object ids: a kind prefix plus a ULID.

A ULID is 48 bits of millisecond time then 80 random bits, so ids are unguessable and sort by
creation time (to the millisecond; ids made in the same millisecond have no defined order).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

from ulid import ULID

MERCHANT = "mer"
PAYMENT = "pay"
REFUND = "re"
PAYABLE = "pyb"
SETTLEMENT = "stl"
CUSTOMER = "cus"
PAYMENT_METHOD = "pm"
CHECKOUT_SESSION = "cs"
EVENT = "evt"
WEBHOOK_ENDPOINT = "we"
WEBHOOK_DELIVERY = "whd"
SUBSCRIPTION = "sub"
DEAD_LETTER = "dl"
ATTEMPT = "att"
BALANCE_TRANSACTION = "txn"  # a journal entry, as the merchant sees it
VAULT_CARD = "card"
PROCESSOR_ACCOUNT = "pa"
INVOICE = "in"
TEST_CLOCK = "clock"

# The longest id an input may name (ours have 30 characters): anything longer cannot exist.
MAX_ID_LENGTH = 64

_PREFIX_SHAPE = re.compile(r"[a-z]+")
# Crockford base32 without I, L, O, U; the first char is at most 7 because a ULID is 128 bits.
_ULID_SHAPE = r"[0-7][0-9A-HJKMNP-TV-Z]{25}"


def new_id(prefix: str) -> str:
    """A fresh id such as ``pay_01JD...``."""
    if not _PREFIX_SHAPE.fullmatch(prefix):
        raise ValueError("an id prefix is lower-case ASCII letters")
    return f"{prefix}_{ULID()}"


def floor_id(prefix: str, moment: datetime) -> str:
    """The smallest id of `prefix` made in `moment`'s millisecond: ids made at or after it sort at or after it
    (an index range on ids is a range in time)."""
    return f"{prefix}_{str(ULID.from_timestamp(moment.timestamp()))[:10]}{'0' * 16}"


@lru_cache(maxsize=64)
def _id_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + "_" + _ULID_SHAPE)


def has_prefix(value: str, prefix: str) -> bool:
    """Whether `value` has the shape of an id of this kind (not whether it exists)."""
    return isinstance(value, str) and _id_pattern(prefix).fullmatch(value) is not None
