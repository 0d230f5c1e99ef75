"""The input models of the payments API: the bodies of `POST /v1/payments` and of a capture, as pydantic
validates them (strict types, unknown fields refused; API.md "Security limits" gives every string its
maximum length). Their JSON schemas are the OpenAPI document's request bodies. What the values mean (a card's
checks, a reference's rules) is services/payments.py's and the domain's to decide.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tender.domain import cards, methods
from tender.domain.ids import MAX_ID_LENGTH
from tender.domain.payments import (
    MAX_CUSTOMER_LENGTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_METADATA_KEYS,
    MAX_REFERENCE_LENGTH,
    MAX_URL_LENGTH,
)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class CardIn(_Strict):
    number: str = Field(
        max_length=32, description="The card number (PAN), 12 to 19 digits, spaces or dashes allowed; stored encrypted."
    )
    exp_month: int
    exp_year: int
    cvc: str = Field(max_length=4, description="3 digits, 4 for American Express; erased once authorization ends.")
    holder_name: str | None = Field(
        default=None, max_length=cards.MAX_HOLDER_NAME, description="At most 200 characters."
    )
    # No `funding`: it decides the fee and when money is available, so it comes from the BIN or the
    # processor (domain/bins.py), never from the merchant; sending it is a 400 parameter_unknown.


class CardMethodIn(_Strict):
    type: Literal["card"]
    card: CardIn


class UpiIn(_Strict):
    vpa: str = Field(max_length=methods.MAX_VPA_LENGTH, description="The shopper's UPI address, name@handle.")


class UpiMethodIn(_Strict):
    type: Literal["upi"]
    upi: UpiIn


class WalletIn(_Strict):
    provider: methods.WalletProvider | None = None


class WalletMethodIn(_Strict):
    type: Literal["wallet"]
    wallet: WalletIn | None = None


class NetbankingIn(_Strict):
    bank: methods.NetbankingBank | None = None


class NetbankingMethodIn(_Strict):
    type: Literal["netbanking"]
    netbanking: NetbankingIn | None = None


class BnplIn(_Strict):
    provider: methods.BnplProvider | None = None


class BnplMethodIn(_Strict):
    type: Literal["bnpl"]
    bnpl: BnplIn | None = None


ApmMethodIn = UpiMethodIn | WalletMethodIn | NetbankingMethodIn | BnplMethodIn
APM_MODELS: dict[str, type[ApmMethodIn]] = {
    "upi": UpiMethodIn,
    "wallet": WalletMethodIn,
    "netbanking": NetbankingMethodIn,
    "bnpl": BnplMethodIn,
}


class PaymentCreate(_Strict):
    amount: int = Field(description="In the currency's minor unit (cents; 0 decimals for JPY, 3 for BHD).")
    currency: str = Field(max_length=3, description="ISO 4217 code, e.g. BRL.")
    payment_method: Annotated[str, Field(max_length=MAX_ID_LENGTH)] | dict[str, Any] = Field(
        description='A saved method id ("pm_..."), {"type": "card", "card": {...}}, {"type": "upi", "upi":'
        ' {"vpa"}}, or {"type": "wallet"|"netbanking"|"bnpl"} with an optional {"wallet": {"provider"}},'
        ' {"netbanking": {"bank"}} or {"bnpl": {"provider"}}. Wallet, netbanking and bnpl need return_url.'
    )
    capture: bool = True
    reference: str | None = Field(
        default=None,
        max_length=MAX_REFERENCE_LENGTH,
        description="Your order id, unique per merchant: 1 to 255 characters.",
    )
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION_LENGTH, description="At most 1000 characters."
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        max_length=MAX_METADATA_KEYS,
        description="Your key-value pairs: at most 50 keys of 1 to 40 characters, each value a string of at"
        " most 500 characters.",
    )
    customer: str | None = Field(
        default=None,
        max_length=MAX_CUSTOMER_LENGTH,
        description="Your customer's id or name: at most 255 characters. With a saved"
        " payment_method or setup_future_usage: a Tender customer's id (cus_...).",
    )
    return_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description="Where the shopper comes back after 3-D Secure or a provider's page: an http(s) URL of"
        " at most 2048 characters.",
    )
    processor: str | None = Field(
        default=None,
        max_length=MAX_ID_LENGTH,
        description='Forces a processor ("simulator" or "stripe"); it must be configured, else a 400 naming'
        " processor. Default: Tender's default processor.",
    )
    off_session: bool = Field(
        default=False,
        description="A merchant-initiated charge of a saved payment method (payment_method: pm_..., with its"
        " customer), the shopper absent: no CVC; the processor is told so.",
    )
    setup_future_usage: Literal["off_session"] | None = Field(
        default=None,
        description='"off_session": once the card payment is authorized, its card is saved to `customer` (a'
        " cus_ id) without its CVC, and the payment shows the saved method's id as payment_method.id.",
    )


class CaptureIn(_Strict):
    amount: int | None = Field(default=None, description="At most the authorized amount; default: all of it.")
