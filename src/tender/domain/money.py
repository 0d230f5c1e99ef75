"""Money: integer minor units plus an ISO 4217 code; never a float.

Rates are `Decimal` and every rounding is explicit (half-up, to the minor unit).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

from tender.domain.errors import ValidationFailed

# Minor-unit exponents of every active ISO 4217 currency (SIX list one, published 2026-01-01).
# Left out on purpose: units of account and bond-market units (XAD, XBA-XBD, XDR, XSU, XUA),
# precious metals (XAU, XAG, XPD, XPT), the test and no-currency codes (XTS, XXX), and withdrawn
# codes (ANG -> XCG, BGN -> EUR, CUC, HRK -> EUR, SLL -> SLE, ZWL -> ZWG).
_EXPONENTS: dict[str, int] = {
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2, "AZN": 2,
    "BAM": 2, "BBD": 2, "BDT": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2, "BOB": 2, "BOV": 2,
    "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2,
    "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4, "CLP": 0, "CNY": 2, "COP": 2,
    "COU": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2,
    "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2,
    "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2,
    "FJD": 2, "FKP": 2,
    "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0, "GTQ": 2, "GYD": 2,
    "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2,
    "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0,
    "JMD": 2, "JOD": 3, "JPY": 0,
    "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2,
    "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3,
    "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2,
    "MVR": 2, "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2,
    "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2,
    "OMR": 3,
    "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0,
    "QAR": 2,
    "RON": 2, "RSD": 2, "RUB": 2, "RWF": 0,
    "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2, "SOS": 2,
    "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2,
    "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2,
    "UAH": 2, "UGX": 0, "USD": 2, "USN": 2, "UYI": 0, "UYU": 2, "UYW": 4, "UZS": 2,
    "VED": 2, "VES": 2, "VND": 0, "VUV": 0,
    "WST": 2,
    "XAF": 0, "XCD": 2, "XCG": 2, "XOF": 0, "XPF": 0,
    "YER": 2,
    "ZAR": 2, "ZMW": 2, "ZWG": 2,
}  # fmt: skip
CURRENCY_EXPONENTS: Mapping[str, int] = MappingProxyType(_EXPONENTS)

# 11 digits of minor units: far above any real charge, and sums of millions of them stay far
# from the BIGINT limit (9.2e18).
MAX_AMOUNT = 99_999_999_999


class UnknownCurrency(ValidationFailed):
    code = "invalid_currency"


def normalize_currency(code: str, *, param: str = "currency") -> str:
    """The upper-case ISO 4217 code; merchants often send "brl", which Stripe accepts too."""
    if not isinstance(code, str):
        raise UnknownCurrency(f"{param} must be a string ISO 4217 code such as BRL or USD.", param=param)
    upper = code.upper()
    if upper not in _EXPONENTS:  # the value is not quoted back: messages quote no input
        raise UnknownCurrency(
            f"{param} is not a supported ISO 4217 currency code (e.g. BRL, USD, EUR).",
            param=param,
        )
    return upper


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point: 2 for BRL, 0 for JPY, 3 for BHD."""
    return _EXPONENTS[normalize_currency(currency)]


def validate_amount(amount: object, currency: str, *, param: str = "amount") -> int:
    """A positive integer of minor units; floats and numeric strings are refused, never coerced."""
    code = currency.upper() if isinstance(currency, str) else ""
    example = f" (e.g. 2500 for {format_amount(2500, code)})" if code in _EXPONENTS else ""
    # bool is an int subclass; `true` must not become a charge of 1.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed(
            f"{param} must be an integer number of minor units{example}, not a {_json_kind(amount)}.",
            param=param,
        )
    if amount <= 0:
        raise ValidationFailed(f"{param} must be greater than 0.", param=param)
    if amount > MAX_AMOUNT:
        raise ValidationFailed(f"{param} must be at most {MAX_AMOUNT}.", param=param)
    return amount


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "decimal number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def format_amount(amount: int, currency: str) -> str:
    """Human form for messages and logs: "25.00 BRL", "2500 JPY", "-1.500 BHD"."""
    code = normalize_currency(currency)
    exponent = _EXPONENTS[code]
    sign = "-" if amount < 0 else ""
    if exponent == 0:
        return f"{sign}{abs(amount)} {code}"
    major, minor = divmod(abs(amount), 10**exponent)
    return f"{sign}{major}.{minor:0{exponent}d} {code}"


def percent_of(amount: int, rate: Decimal, currency: str) -> int:
    """`amount * rate` in minor units, rounded half-up (ties away from zero).

    Exact integer arithmetic on the rate's fraction, so no Decimal context precision can round
    a product before the final rounding.
    """
    normalize_currency(currency)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be an int of minor units")
    if not isinstance(rate, Decimal):
        raise TypeError("rate must be a Decimal (floats cannot represent rates exactly)")
    if not rate.is_finite():
        raise ValueError("rate must be a finite Decimal")
    numerator, denominator = rate.as_integer_ratio()
    product = amount * numerator
    quotient, remainder = divmod(abs(product), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return -quotient if product < 0 else quotient
