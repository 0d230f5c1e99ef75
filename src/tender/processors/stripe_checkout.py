"""Stripe Checkout Sessions: the page Stripe hosts for a Tender checkout session (API.md "Hosted by the processor").

Only the calls the flow needs: create (Tender's session id as Idempotency-Key and `client_reference_id`), find
by `client_reference_id` (Stripe's list has no such filter: the sessions created since ours, scanned), retrieve
and expire. Every failure to get an answer is a `StripeCheckoutUnavailable` that carries no request body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

# Stripe's list pages hold at most 100; a look-up scans this many pages of sessions created since ours.
_PAGE = 100
_MAX_PAGES = 10


@dataclass(frozen=True, slots=True)
class StripeSession:
    """The fields of Stripe's Checkout Session object Tender reads."""

    id: str
    url: str | None
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    payment_intent: str | None
    client_reference_id: str | None
    amount_total: int | None
    currency: str | None  # lower case, as Stripe writes it

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StripeSession:
        intent = d.get("payment_intent")
        if isinstance(intent, Mapping):  # expanded
            intent = intent.get("id")
        return cls(
            id=str(d["id"]),
            url=d.get("url"),
            status=str(d.get("status") or "open"),
            payment_status=str(d.get("payment_status") or "unpaid"),
            payment_intent=str(intent) if intent else None,
            client_reference_id=d.get("client_reference_id"),
            amount_total=d.get("amount_total"),
            currency=d.get("currency"),
        )

    @property
    def paid(self) -> bool:
        return self.status == "complete" and self.payment_status == "paid"


class StripeCheckoutUnavailable(Exception):
    """Stripe gave no usable answer (unreachable, timeout, 429, 5xx, refused credentials): try again later."""


@dataclass(frozen=True, slots=True)
class SessionRequest:
    reference: str  # Tender's checkout session id
    amount: int
    currency: str
    name: str
    success_url: str
    cancel_url: str
    expires_at: datetime
    created: datetime  # when Tender's session was created: the look-up scans Stripe's sessions from then


class StripeCheckout:
    def __init__(self, secret_key: str, *, api_base: str | None = None, timeout: float = 10.0) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=0,  # Tender's own look-ups and retries decide
        )

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # untyped in stripe-python

    async def create(self, r: SessionRequest) -> StripeSession:
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": r.reference,
            "metadata": {"tender_checkout_session": r.reference},
            "payment_intent_data": {"metadata": {"tender_checkout_session": r.reference}},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": r.currency.lower(),
                        "unit_amount": r.amount,
                        "product_data": {"name": r.name},
                    },
                }
            ],
            "success_url": r.success_url,
            "cancel_url": r.cancel_url,
            "expires_at": int(r.expires_at.timestamp()),
        }
        try:
            created = await self._client.v1.checkout.sessions.create_async(
                params,  # type: ignore[arg-type]  # a plain dict of Stripe's documented fields
                {"idempotency_key": r.reference},
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None
        return StripeSession.from_dict(created.to_dict())

    async def find(self, reference: str, created_since: datetime) -> StripeSession | None:
        """The Stripe session registered for Tender's session `reference`, if one was (a call whose answer was
        lost, a crash between Stripe's answer and Tender's commit)."""
        params: dict[str, Any] = {"limit": _PAGE, "created": {"gte": int(created_since.timestamp()) - 60}}
        try:
            for _ in range(_MAX_PAGES):
                page = (await self._client.v1.checkout.sessions.list_async(params)).to_dict()  # type: ignore[arg-type]
                rows = page.get("data") or []
                for row in rows:
                    if row.get("client_reference_id") == reference:
                        return StripeSession.from_dict(row)
                if not page.get("has_more") or not rows:
                    return None
                params["starting_after"] = rows[-1]["id"]
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None
        raise StripeCheckoutUnavailable("too many Stripe sessions to scan for this one; try again")

    async def retrieve(self, session_id: str) -> StripeSession:
        try:
            found = await self._client.v1.checkout.sessions.retrieve_async(session_id)
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None
        return StripeSession.from_dict(found.to_dict())

    async def expire(self, session_id: str) -> StripeSession:
        try:
            done = await self._client.v1.checkout.sessions.expire_async(session_id)
        except stripe.InvalidRequestError:  # not open any more (paid or expired): what it is now
            return await self.retrieve(session_id)
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None
        return StripeSession.from_dict(done.to_dict())


def _unavailable(exc: stripe.StripeError) -> StripeCheckoutUnavailable:
    # Stripe's own message names the problem; it never holds card data (Checkout never sends any).
    return StripeCheckoutUnavailable(f"Stripe: {type(exc).__name__} ({exc.http_status or 'no answer'})")
