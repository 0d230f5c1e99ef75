"""Alternative payment methods (APMs): which exist, which send the shopper away, and their input rules.

The public view of an APM is `{"type": T, T: {...}}` (e.g. `{"type": "upi", "upi": {"vpa": ...}}`); it is
also exactly what the worker sends the processor, since an APM has nothing secret to keep in the vault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from tender.domain.errors import ValidationFailed

APM_TYPES = ("upi", "wallet", "netbanking", "bnpl")
# The shopper is sent to the provider's page and back to `return_url`, so one is required. UPI is a
# collect request the shopper approves in their own UPI app: the shop's page can simply wait.
REDIRECT_TYPES = frozenset({"wallet", "netbanking", "bnpl"})

WalletProvider = Literal["amazon_pay", "paypal", "paytm", "phonepe"]
NetbankingBank = Literal["AXIS", "HDFC", "ICICI", "KOTAK", "SBI", "YES"]
BnplProvider = Literal["affirm", "afterpay", "klarna", "simpl"]
WALLET_PROVIDERS: tuple[str, ...] = get_args(WalletProvider)
NETBANKING_BANKS: tuple[str, ...] = get_args(NetbankingBank)
BNPL_PROVIDERS: tuple[str, ...] = get_args(BnplProvider)

MAX_VPA_LENGTH = 255
# NPCI's shape: a name of letters, digits, dots, hyphens and underscores, "@", the PSP's handle (letters
# first). Case does not matter to UPI, so it is kept lower-case.
_VPA = re.compile(r"[a-z0-9][a-z0-9._-]{0,199}@[a-z][a-z0-9]{1,63}")


def validate_vpa(value: str, *, param: str = "payment_method.upi.vpa") -> str:
    """A UPI virtual payment address (`name@handle`), lower-cased; ValidationFailed naming `param`."""
    vpa = value.strip().lower()
    # ASCII before lower-casing too: "\u212a".lower() is an ASCII "k".
    if len(vpa) > MAX_VPA_LENGTH or not value.isascii() or not _VPA.fullmatch(vpa):
        raise ValidationFailed(
            f"{param} must be a UPI address of the form name@handle (e.g. shopper@okhdfc).", param=param
        )
    return vpa


def is_apm(payment_method: Mapping[str, Any]) -> bool:
    return payment_method.get("type") in APM_TYPES
