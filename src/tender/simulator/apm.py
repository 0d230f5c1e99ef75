"""What the simulated providers of alternative payment methods (APMs) answer.

Every APM authorization first waits for the shopper (`action_required`): wallets, net banking and
buy-now-pay-later send them to the provider's approval page (`/apm/{id}` here); UPI sends a collect request
to the shopper's UPI app, played by the same page. Two test UPI addresses decide on their own after
`upi_delay_ms`, as a real UPI app answers a collect request asynchronously: `success@upi` approves,
`failure@upi` declines. Any other valid address waits for the page.
"""

from __future__ import annotations

import re

from tender.simulator.cards import APPROVED, DECLINED, Decision

METHOD_TYPES = ("upi", "wallet", "netbanking", "bnpl")
# The one detail each method may carry (UPI's is required), as Tender sends it: {"type": T, T: {field}}.
DETAIL_FIELDS = {"upi": "vpa", "wallet": "provider", "netbanking": "bank", "bnpl": "provider"}
REDIRECT_TYPES = frozenset({"wallet", "netbanking", "bnpl"})  # these need a return_url

# re.ASCII: with IGNORECASE alone, [a-z] also matches the Kelvin sign and the long s.
VPA = re.compile(r"[a-z0-9][a-z0-9._-]{0,199}@[a-z][a-z0-9]{1,63}", re.IGNORECASE | re.ASCII)
SUCCESS_VPA = "success@upi"
FAILURE_VPA = "failure@upi"

NAMES = {
    "upi": "UPI",
    "wallet": "Wallet",
    "netbanking": "Net banking",
    "bnpl": "Buy now, pay later",
}

# Display names of the details Tender knows; anything else is shown as sent.
_DISPLAY = {
    "amazon_pay": "Amazon Pay", "paypal": "PayPal", "paytm": "Paytm", "phonepe": "PhonePe",
    "affirm": "Affirm", "afterpay": "Afterpay", "klarna": "Klarna", "simpl": "Simpl",
    "AXIS": "Axis Bank", "HDFC": "HDFC Bank", "ICICI": "ICICI Bank", "KOTAK": "Kotak Mahindra Bank",
    "SBI": "State Bank of India", "YES": "Yes Bank",
}  # fmt: skip

APPROVED_BY_SHOPPER = Decision(APPROVED)

_DECLINE_MESSAGES = {
    "upi": "The shopper declined the UPI collect request.",
    "wallet": "The shopper declined the payment at the wallet provider.",
    "netbanking": "The shopper declined the payment at their bank.",
    "bnpl": "The buy-now-pay-later provider did not approve the payment.",
}


def declined(method: str) -> Decision:
    """A shopper's (or provider's) refusal: Stripe's code for an APM provider's decline, and which method."""
    return Decision(DECLINED, "payment_method_provider_decline", f"{method}_declined", _DECLINE_MESSAGES[method])


def initial(method: str) -> Decision:
    return Decision("action_required", message=f"The shopper must approve this {NAMES[method]} payment.")


def automatic(method: str, details: dict[str, str | None]) -> Decision | None:
    """The decision a test UPI address makes on its own, or None: the shopper decides on the page."""
    if method != "upi":
        return None
    vpa = (details.get("vpa") or "").lower()
    if vpa == SUCCESS_VPA:
        return APPROVED_BY_SHOPPER
    if vpa == FAILURE_VPA:
        return declined("upi")
    return None


def provider_name(method: str, details: dict[str, str | None]) -> str:
    """Who the shopper approves with: "PayPal", "HDFC Bank", "UPI"; the method's name if none was given."""
    if method == "upi":
        return NAMES["upi"]
    value = details.get(DETAIL_FIELDS[method])
    return _DISPLAY.get(value, value) if value else NAMES[method]
