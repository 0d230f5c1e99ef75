"""Tender's `stripe` processor: cards through Stripe's PaymentIntents, with the official `stripe` package.

Register, then execute (DESIGN.md "Processors"): `register` creates a PaymentMethod from the vaulted card (the
number leaves the vault only in that request) and an UNCONFIRMED PaymentIntent carrying it (Tender's attempt id
as its Idempotency-Key and in `metadata[tender_attempt]`); the services store its `pi_...` id with the attempt
in their own transaction, and only then is that id confirmed (`authorize` with `processor_reference` set). A
PaymentIntent succeeds at most once, so a confirm retried after a timeout can never charge twice, and a lost
answer is resolved by retrieving the stored id (`lookup`), exactly as for the simulator. A registration whose
answer was lost may leave an orphan PaymentIntent at Stripe: it is never confirmed, so it never charges.

`capture_method` follows the payment: `automatic` when it captures at once, so the one confirm charges or
does not (there is no moment where Tender could read Stripe's "authorized" as "captured"), `manual` when the
merchant captures later (`capture` under the capture attempt's key).

The mapping of Stripe's answers (`result_from_payment_intent`, `result_from_refund`, `result_from_error`) is
pure and shared with the webhook route. Failures are classified as the simulator's are: nothing sent (refused
connection, DNS, a connect timeout) or refused before acting (429, an authentication error) is TRANSIENT;
a timeout or a 5xx after a side-effecting request was sent is UNKNOWN (look it up); a card error is DECLINED.
Messages never carry a request body, so no card number or CVC can reach them.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import stripe
from stripe.params import (
    PaymentIntentCaptureParams,
    PaymentIntentConfirmParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentMethodCreateParams,
    PaymentMethodCreateParamsCard,
    RefundCreateParams,
    RefundListParams,
)

from tender.config import Settings
from tender.domain.bins import known_funding
from tender.domain.reconciliation import ChargeStatus, RecordKind, RefundStatus
from tender.processors.base import (
    AuthorizeRequest,
    CardData,
    InvalidNotification,
    Notification,
    Outcome,
    ProcessorRecord,
    ProcessorResult,
    RecordsUnavailable,
    SavedMethod,
)

log = logging.getLogger(__name__)


class _NoRequestBodies(logging.Filter):
    """stripe-python logs each request's form body ("Post details") and each answer's body at DEBUG: a card
    number and CVC are in the PaymentMethod's. Tender's LOG_LEVEL=DEBUG must not write them, so nothing below
    WARNING leaves the `stripe` logger (its INFO lines say only method, URL and status; ours say more)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_stripe_logger = logging.getLogger("stripe")
_stripe_logger.setLevel(logging.WARNING)
_stripe_logger.addFilter(_NoRequestBodies())

DEFAULT_API_BASE = "https://api.stripe.com"
ATTEMPT_METADATA = "tender_attempt"  # the PaymentIntent's metadata key naming Tender's authorize attempt
REFUND_METADATA = "tender_refund"  # a Refund's metadata key naming Tender's refund
SAVED_METADATA = "tender_payment_method"  # a saved card's Stripe Customer and PaymentMethod name Tender's pm_ id

# Exceptions (the cause of stripe's APIConnectionError) raised before any byte of the request left.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


# -- the mapping: pure functions over Stripe's JSON ---------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None where a step is missing or not an object (Stripe expands lazily)."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _amount(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _redirect_url(pi: Mapping[str, Any]) -> str | None:
    """Where the shopper authenticates: `next_action.redirect_to_url.url` (a confirm with a return_url), else the
    3-D Secure page Stripe.js would open (`use_stripe_sdk.stripe_js`), if Stripe gave one."""
    url = _get(pi, "next_action", "redirect_to_url", "url") or _get(pi, "next_action", "use_stripe_sdk", "stripe_js")
    return url if isinstance(url, str) and url else None


def _funding(pi: Mapping[str, Any]) -> Any:
    """The card's funding as Stripe knows it: the expanded PaymentMethod's, else the charge's."""
    return _get(pi, "payment_method", "card", "funding") or _get(
        pi, "latest_charge", "payment_method_details", "card", "funding"
    )


def result_from_payment_intent(pi: Mapping[str, Any]) -> ProcessorResult:
    """What a PaymentIntent says of Tender's authorization: its id is the processor_reference.

    requires_payment_method / requires_confirmation without an error: registered but never confirmed, i.e. the
    authorization has not arrived (NOT_FOUND: the services confirm it); requires_payment_method after a failed
    attempt: declined; processing: not known yet (UNKNOWN: looked up again)."""
    reference = pi.get("id") if isinstance(pi.get("id"), str) else None
    status = pi.get("status")
    error = pi.get("last_payment_error")
    funding = known_funding(_funding(pi))
    match status:
        case "succeeded" | "requires_capture":
            captured = status == "succeeded"
            received = _amount(pi.get("amount_received"))
            if received is None and captured:
                received = _amount(_get(pi, "latest_charge", "amount_captured"))
            return ProcessorResult(
                Outcome.APPROVED,
                processor_reference=reference,
                captured=captured,
                amount_captured=received if captured else None,
                funding=funding,
            )
        case "requires_action":
            return ProcessorResult(
                Outcome.ACTION_REQUIRED,
                processor_reference=reference,
                redirect_url=_redirect_url(pi),
                funding=funding,
            )
        case "canceled":
            reason = pi.get("cancellation_reason")
            return ProcessorResult(
                Outcome.DECLINED,
                processor_reference=reference,
                failure_code="canceled",
                message=f"Canceled at Stripe ({reason})." if isinstance(reason, str) else "Canceled at Stripe.",
            )
        case "requires_payment_method" if isinstance(error, Mapping):
            return _declined(error, reference)
        case "requires_payment_method" | "requires_confirmation":
            return ProcessorResult(
                Outcome.NOT_FOUND, processor_reference=reference, message="registered at Stripe, not confirmed"
            )
        case "processing":
            return ProcessorResult(Outcome.UNKNOWN, processor_reference=reference, message="processing at Stripe")
    return ProcessorResult(Outcome.UNKNOWN, processor_reference=reference, message=f"unexpected status {status!r}")


def _declined(error: Mapping[str, Any], reference: str | None) -> ProcessorResult:
    """A card error (a PaymentIntent's last_payment_error, or a 402's error body)."""
    code = error.get("code")
    decline_code = error.get("decline_code")
    message = error.get("message")
    return ProcessorResult(
        Outcome.DECLINED,
        processor_reference=reference,
        failure_code=code if isinstance(code, str) and code else "card_declined",
        decline_code=decline_code if isinstance(decline_code, str) else None,
        message=message if isinstance(message, str) else None,
    )


def result_from_refund(refund: Mapping[str, Any]) -> ProcessorResult:
    """A Refund: succeeded -> APPROVED; failed or canceled -> DECLINED; pending or requires_action -> UNKNOWN."""
    reference = refund.get("id") if isinstance(refund.get("id"), str) else None
    match refund.get("status"):
        case "succeeded":
            return ProcessorResult(Outcome.APPROVED, processor_reference=reference)
        case "failed" | "canceled":
            reason = refund.get("failure_reason")
            return ProcessorResult(
                Outcome.DECLINED,
                processor_reference=reference,
                failure_code=reason if isinstance(reason, str) else "refund_failed",
                message="Stripe could not make the refund.",
            )
    return ProcessorResult(Outcome.UNKNOWN, processor_reference=reference, message="refund pending at Stripe")


def result_from_error(exc: Exception, *, side_effect: bool) -> ProcessorResult:
    """A call that raised. `side_effect`: the call may change something at Stripe (create, confirm, capture...);
    a look-up (retrieve, list) never does, so it is at worst TRANSIENT."""
    name = type(exc).__name__
    if isinstance(exc, stripe.APIConnectionError):
        sent = not isinstance(exc.__cause__, _NOT_SENT)
        when = "after the request may have been sent" if sent else "before the request was sent"
        cause = type(exc.__cause__).__name__ if exc.__cause__ else name
        outcome = Outcome.UNKNOWN if side_effect and sent else Outcome.TRANSIENT
        return ProcessorResult(outcome, message=f"Stripe unreachable {when}: {cause}")
    if not isinstance(exc, stripe.StripeError):
        outcome = Outcome.UNKNOWN if side_effect else Outcome.TRANSIENT
        return ProcessorResult(outcome, message=f"Stripe call failed: {name}")
    status = exc.http_status
    code = exc.code
    detail = f"Stripe answered HTTP {status} ({name}{', ' + code if code else ''})"
    if isinstance(exc, stripe.CardError):
        body = _get(exc.json_body, "error")
        error = body if isinstance(body, Mapping) else {"code": code, "message": exc.user_message}
        return _declined(error, _get(error, "payment_intent", "id"))
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        # Tender's own key is wrong or lacks a right: nothing was charged; an operator must act (the retries
        # run out into a dead letter carrying this message).
        return ProcessorResult(
            Outcome.TRANSIENT, message=f"{detail}: Stripe refused Tender's API key; check TENDER_STRIPE_SECRET_KEY"
        )
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return ProcessorResult(Outcome.TRANSIENT, message=detail)
    if isinstance(exc, stripe.IdempotencyError):
        return ProcessorResult(Outcome.UNKNOWN, message=detail)  # the key was used for another request: look up
    if status is None or status >= 500:
        outcome = Outcome.UNKNOWN if side_effect else Outcome.TRANSIENT
        return ProcessorResult(outcome, message=detail)
    if status == 404 and not side_effect:
        return ProcessorResult(Outcome.NOT_FOUND, message=detail)
    if not side_effect:
        return ProcessorResult(Outcome.TRANSIENT, message=detail)
    # Any other 4xx: Stripe refused this request and did nothing; resending it will not help.
    message = exc.user_message if isinstance(exc.user_message, str) else None
    return ProcessorResult(Outcome.DECLINED, failure_code=code or "processing_error", message=message or detail)


def charge_status(pi: Mapping[str, Any]) -> ChargeStatus:
    """A PaymentIntent's status for reconciliation. One that was registered but never confirmed (no charge:
    requires_payment_method or requires_confirmation without an error, or canceled before any charge) is not a
    charge (INCOMPLETE); requires_payment_method after a failed charge is a decline."""
    match pi.get("status"):
        case "succeeded":
            return ChargeStatus.SUCCEEDED
        case "requires_capture":
            return ChargeStatus.AUTHORIZED
        case "requires_action":
            return ChargeStatus.ACTION_REQUIRED
        case "processing":
            return ChargeStatus.PENDING
        case "canceled":
            return ChargeStatus.CANCELED if pi.get("latest_charge") else ChargeStatus.INCOMPLETE
        case "requires_payment_method" if isinstance(pi.get("last_payment_error"), Mapping):
            return ChargeStatus.DECLINED
        case "requires_payment_method" | "requires_confirmation":
            return ChargeStatus.INCOMPLETE
    return ChargeStatus.PENDING


def record_of_payment_intent(pi: Mapping[str, Any]) -> ProcessorRecord:
    """A PaymentIntent as a reconciliation record: Tender's attempt is its metadata's (None if not Tender's)."""
    captured = _amount(pi.get("amount_received"))
    if not captured:  # localstripe has no amount_received: its charge says it (as `captured` and `amount`)
        captured = _amount(_get(pi, "latest_charge", "amount_captured"))
        if captured is None and _get(pi, "latest_charge", "captured") is True:
            captured = _amount(_get(pi, "latest_charge", "amount"))
    status = charge_status(pi)
    attempt = _get(pi, "metadata", ATTEMPT_METADATA)
    return ProcessorRecord(
        kind=RecordKind.CHARGE,
        reference=attempt if isinstance(attempt, str) else None,
        processor_id=str(pi["id"]),
        amount=int(pi["amount"]),
        currency=str(pi["currency"]).upper(),
        status=status,
        created=datetime.fromtimestamp(int(pi["created"]), UTC),
        amount_captured=(captured or 0) if status is ChargeStatus.SUCCEEDED else 0,
    )


def record_of_refund(refund: Mapping[str, Any]) -> ProcessorRecord:
    """A Refund as a reconciliation record: Tender's refund is its metadata's (None if made elsewhere)."""
    match refund.get("status"):
        case "succeeded":
            status = RefundStatus.SUCCEEDED
        case "failed" | "canceled":
            status = RefundStatus.FAILED
        case _:
            status = RefundStatus.PENDING
    ours = _get(refund, "metadata", REFUND_METADATA)
    intent = refund.get("payment_intent")
    return ProcessorRecord(
        kind=RecordKind.REFUND,
        reference=ours if isinstance(ours, str) else None,
        processor_id=str(refund["id"]),
        amount=int(refund["amount"]),
        currency=str(refund["currency"]).upper(),
        status=status,
        created=datetime.fromtimestamp(int(refund["created"]), UTC),
        charge=intent if isinstance(intent, str) else None,
    )


def intent_params(request: AuthorizeRequest, payment_method: str, *, cards_only: bool) -> PaymentIntentCreateParams:
    """The unconfirmed PaymentIntent of an authorization. `capture_method` follows the payment (module
    docstring). `cards_only`: Stripe's PaymentIntents accept the Dashboard's payment methods by default, some of
    which redirect, and Stripe then refuses a server-side confirm without a return_url; a card-only PaymentIntent
    confirms without one (3-D Secure then comes as next_action). localstripe, which emulates an older API,
    refuses the parameter, so it is sent to Stripe's own API only (StripeProcessor's default)."""
    params: PaymentIntentCreateParams = {
        "amount": request.amount,
        "currency": request.currency.lower(),
        "payment_method": payment_method,
        "capture_method": "automatic" if request.capture else "manual",
        "metadata": {ATTEMPT_METADATA: request.reference, "tender_payment": request.payment_id},
    }
    if cards_only:
        params["allowed_payment_method_types"] = ["card"]
    return params


def saved_intent_params(
    request: AuthorizeRequest, customer: str, payment_method: str, *, cards_only: bool
) -> PaymentIntentCreateParams:
    """The unconfirmed PaymentIntent of a saved card's charge: on the Stripe Customer and PaymentMethod made for
    it once (StripeProcessor._saved_refs), as Stripe requires for a merchant-initiated charge."""
    params = intent_params(request, payment_method, cards_only=cards_only)
    params["customer"] = customer
    return params


def confirm_params(request: AuthorizeRequest, *, emulator: bool) -> PaymentIntentConfirmParams:
    """A confirm: a merchant-initiated charge says `off_session` (the shopper is absent: Stripe then declines with
    authentication_required rather than asking for 3-D Secure), a shopper's may carry a return_url. localstripe
    refuses both on a confirm, so an emulator gets neither."""
    params: PaymentIntentConfirmParams = {"expand": ["payment_method"]}
    if emulator:
        return params
    if request.off_session:
        params["off_session"] = True
    elif request.return_url:  # 3-D Secure then comes back as next_action.redirect_to_url
        params["return_url"] = request.return_url
    return params


# -- the client -----------------------------------------------------------------------------------------


def _dict(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = obj.to_dict()
    return result


class StripeProcessor:
    """A `Processor` (and a registering one: processors/base.py RegisteringProcessor) over Stripe's API."""

    name = "stripe"

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 10.0,
        emulator: bool | None = None,
    ) -> None:
        self._secret_key = secret_key
        self._api_base = api_base.rstrip("/")
        # An emulator (localstripe; by default any API base but Stripe's own) refuses parameters of today's API
        # that Stripe itself needs: the card-only restriction (intent_params) and a confirm's return_url.
        self._emulator = self._api_base != DEFAULT_API_BASE if emulator is None else emulator
        self._timeout = timeout
        self._client: stripe.StripeClient | None = None
        self._http: stripe.HTTPXClient | None = None

    def _stripe(self) -> stripe.StripeClient:
        # Made lazily, inside the running event loop; no retries of its own: Tender's pumps retry, under the
        # same keys, after a look-up.
        if self._client is None:
            self._http = stripe.HTTPXClient(timeout=httpx.Timeout(self._timeout))
            self._client = stripe.StripeClient(
                self._secret_key,
                base_addresses={"api": self._api_base},
                http_client=self._http,
                max_network_retries=0,
            )
        return self._client

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close_async()  # type: ignore[no-untyped-call]  # untyped in stripe-python
            self._http = None
            self._client = None

    # -- register, then execute -----------------------------------------------------------------------

    async def register(self, request: AuthorizeRequest) -> ProcessorResult:
        """Create the PaymentMethod and the unconfirmed PaymentIntent: NOT_FOUND with the `pi_...` id as
        processor_reference when registered (nothing charged yet); else why not (TRANSIENT, UNKNOWN, DECLINED)."""
        card = request.card
        if card is None:
            return ProcessorResult(
                Outcome.DECLINED, failure_code="payment_method_unsupported", message="Stripe takes cards only here."
            )
        if request.saved is not None:
            return await self._register_saved(request, card, request.saved)
        client = self._stripe()
        key = request.reference
        try:
            method = await client.v1.payment_methods.create_async(
                params={
                    "type": "card",
                    "card": {
                        "number": card.number,
                        "exp_month": card.exp_month,
                        "exp_year": card.exp_year,
                        "cvc": card.cvc or "",
                    },
                    **({"billing_details": {"name": card.holder_name}} if card.holder_name else {}),
                },
                options={"idempotency_key": f"{key}-pm"},
            )
        except Exception as exc:  # classified, never raised: see the module docstring
            # Making a PaymentMethod charges nothing, so even an unknown outcome is safe to repeat.
            result = result_from_error(exc, side_effect=True)
            return result if result.outcome is Outcome.DECLINED else _as_transient(result)
        try:
            intent = await client.v1.payment_intents.create_async(
                params=intent_params(request, method.id, cards_only=not self._emulator),
                options={"idempotency_key": key},
            )
        except Exception as exc:
            # An unconfirmed PaymentIntent charges nothing: whatever happened, registering again is safe.
            result = result_from_error(exc, side_effect=True)
            return result if result.outcome is Outcome.DECLINED else _as_transient(result)
        return ProcessorResult(Outcome.NOT_FOUND, processor_reference=intent.id, message="registered at Stripe")

    async def _register_saved(self, request: AuthorizeRequest, card: CardData, saved: SavedMethod) -> ProcessorResult:
        """A saved card's charge: its Stripe Customer and PaymentMethod (made once, the first time it is charged
        here, then remembered by the services: answered in saved_refs), and an unconfirmed PaymentIntent on them."""
        known = saved.refs.get(self.name)
        created: dict[str, Any] | None = None
        if isinstance(known, Mapping) and known.get("customer") and known.get("payment_method"):
            customer, method = str(known["customer"]), str(known["payment_method"])
        else:
            made = await self._saved_refs(card, saved.id)
            if isinstance(made, ProcessorResult):
                return made
            customer, method = made["customer"], made["payment_method"]
            created = made
        try:
            intent = await self._stripe().v1.payment_intents.create_async(
                params=saved_intent_params(request, customer, method, cards_only=not self._emulator),
                options={"idempotency_key": request.reference},
            )
        except Exception as exc:  # an unconfirmed PaymentIntent charges nothing: registering again is safe
            result = result_from_error(exc, side_effect=True)
            return result if result.outcome is Outcome.DECLINED else _as_transient(result)
        return ProcessorResult(
            Outcome.NOT_FOUND, processor_reference=intent.id, message="registered at Stripe", saved_refs=created
        )

    async def _saved_refs(self, card: CardData, saved_id: str) -> dict[str, str] | ProcessorResult:
        """A Stripe Customer and a PaymentMethod attached to it for Tender's saved card `saved_id` (no CVC: it has
        none). Their idempotency keys derive from `saved_id`, so a registration repeated before the services have
        written them (a crash, a lost answer) finds the same objects at Stripe (within its 24 h of keys); once
        written they are never made again. Nothing here charges anything."""
        client = self._stripe()
        try:
            customer = await client.v1.customers.create_async(
                params={"metadata": {SAVED_METADATA: saved_id}}, options={"idempotency_key": f"{saved_id}-customer"}
            )
            method = await client.v1.payment_methods.create_async(
                params=self._saved_method_params(card, saved_id), options={"idempotency_key": f"{saved_id}-pm"}
            )
            await client.v1.payment_methods.attach_async(
                method.id, params={"customer": customer.id}, options={"idempotency_key": f"{saved_id}-attach"}
            )
        except Exception as exc:  # nothing charged: a decline (the card refused on attach) is final, the rest retried
            result = result_from_error(exc, side_effect=True)
            return result if result.outcome is Outcome.DECLINED else _as_transient(result)
        return {"customer": customer.id, "payment_method": method.id}

    def _saved_method_params(self, card: CardData, saved_id: str) -> PaymentMethodCreateParams:
        """A saved card's PaymentMethod: number and expiry, no CVC (it has none). localstripe refuses a card without
        a 3-digit cvc, which Stripe does not require: an emulator alone gets a placeholder, never a real CVC."""
        fields: PaymentMethodCreateParamsCard = {
            "number": card.number,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
        }
        if self._emulator:
            fields["cvc"] = "000"
        params: PaymentMethodCreateParams = {"type": "card", "card": fields, "metadata": {SAVED_METADATA: saved_id}}
        if card.holder_name:
            params["billing_details"] = {"name": card.holder_name}
        return params

    async def authorize(self, request: AuthorizeRequest) -> ProcessorResult:
        """Confirm the registered PaymentIntent (request.processor_reference). Unregistered: TRANSIENT (the
        services register first)."""
        intent = request.processor_reference
        if intent is None:
            return ProcessorResult(Outcome.TRANSIENT, message="not registered at Stripe yet")
        params = confirm_params(request, emulator=self._emulator)
        try:
            pi = await self._stripe().v1.payment_intents.confirm_async(
                intent, params=params, options={"idempotency_key": f"{request.reference}-confirm"}
            )
        except Exception as exc:
            return _with_reference(result_from_error(exc, side_effect=True), intent)
        return result_from_payment_intent(_dict(pi))

    async def lookup(self, reference: str) -> ProcessorResult:
        """The PaymentIntent `reference` (a `pi_...` id) as Tender sees it."""
        try:
            pi = await self._stripe().v1.payment_intents.retrieve_async(
                reference, params={"expand": ["payment_method"]}
            )
        except Exception as exc:
            return result_from_error(exc, side_effect=False)
        return result_from_payment_intent(_dict(pi))

    # -- captures, cancels, refunds ---------------------------------------------------------------------

    async def capture(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult:
        """Capture `amount` (None: all) of PaymentIntent `authorization`, `reference` the idempotency key."""
        params: PaymentIntentCaptureParams = {"expand": ["payment_method"]}
        if amount is not None:
            params["amount_to_capture"] = amount
        try:
            pi = await self._stripe().v1.payment_intents.capture_async(
                authorization, params=params, options={"idempotency_key": reference}
            )
        except Exception as exc:
            return _with_reference(result_from_error(exc, side_effect=True), authorization)
        return result_from_payment_intent(_dict(pi))

    async def cancel(self, reference: str, authorization: str) -> ProcessorResult:
        """Void PaymentIntent `authorization` (uncaptured, or waiting for the shopper): APPROVED once canceled."""
        try:
            pi = await self._stripe().v1.payment_intents.cancel_async(
                authorization, options={"idempotency_key": reference}
            )
        except Exception as exc:
            return _with_reference(result_from_error(exc, side_effect=True), authorization)
        return _cancel_result(result_from_payment_intent(_dict(pi)))

    async def refund(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult:
        """Refund `amount` (None: all that is left) of PaymentIntent `authorization`; `reference` is Tender's
        refund id, the idempotency key and `metadata[tender_refund]` (found again by `lookup_refund`)."""
        params: RefundCreateParams = {"payment_intent": authorization, "metadata": {REFUND_METADATA: reference}}
        if amount is not None:
            params["amount"] = amount
        try:
            refund = await self._stripe().v1.refunds.create_async(
                params=params,
                options={"idempotency_key": reference},
            )
        except Exception as exc:
            return result_from_error(exc, side_effect=True)
        return result_from_refund(_dict(refund))

    async def lookup_operation(self, reference: str) -> ProcessorResult:
        """Stripe keeps no operation under Tender's id: the services ask `lookup_operation_on` instead."""
        return ProcessorResult(Outcome.TRANSIENT, message="a Stripe operation is looked up on its PaymentIntent")

    async def lookup_operation_on(self, reference: str, operation: str, authorization: str) -> ProcessorResult:
        """Did `operation` (capture | cancel | refund) `reference` on PaymentIntent `authorization` happen?"""
        if operation == "refund":
            return await self.lookup_refund(reference, authorization)
        found = await self.lookup(authorization)
        if found.outcome not in (Outcome.APPROVED, Outcome.DECLINED):
            return found if found.outcome in (Outcome.TRANSIENT, Outcome.UNKNOWN) else _not_yet(authorization)
        if operation == "capture":
            if found.outcome is Outcome.APPROVED and found.captured:
                return found
            if found.outcome is Outcome.APPROVED:
                return _not_yet(authorization)  # still requires_capture: the capture never arrived
            return ProcessorResult(Outcome.DECLINED, processor_reference=authorization, failure_code="canceled")
        # cancel
        if found.outcome is Outcome.DECLINED and found.failure_code == "canceled":
            return ProcessorResult(Outcome.APPROVED, processor_reference=authorization)
        if found.outcome is Outcome.APPROVED and not found.captured:
            return _not_yet(authorization)
        return ProcessorResult(Outcome.DECLINED, processor_reference=authorization, failure_code="already_captured")

    async def lookup_refund(self, reference: str, authorization: str) -> ProcessorResult:
        """Tender's refund `reference` among the PaymentIntent's refunds (a list: consistent, unlike search)."""
        try:
            page = await self._stripe().v1.refunds.list_async(params={"payment_intent": authorization, "limit": 100})
        except Exception as exc:
            return result_from_error(exc, side_effect=False)
        for refund in _dict(page).get("data") or []:
            if _get(refund, "metadata", REFUND_METADATA) == reference:
                return result_from_refund(refund)
        return ProcessorResult(Outcome.NOT_FOUND, message="no such refund at Stripe")

    # -- records, for reconciliation -----------------------------------------------------------------------

    async def list_records(self, start: datetime, end: datetime) -> list[ProcessorRecord]:
        """Every PaymentIntent and Refund created in [start, end), through Stripe's list APIs (`created` filter,
        100 a page, `starting_after` until `has_more` is false). localstripe refuses the `created` filter (and
        lists in insertion order): against an emulator every page is read and the window applied here."""
        gte, lt = int(start.timestamp()), math.ceil(end.timestamp())
        client = self._stripe()
        records: list[ProcessorRecord] = []
        try:
            after: str | None = None
            while True:
                intents: PaymentIntentListParams = {"limit": 100}
                if self._emulator:  # its PaymentIntents have no amount_received: the charge says it
                    intents["expand"] = ["data.latest_charge"]
                else:
                    intents["created"] = {"gte": gte, "lt": lt}
                if after:
                    intents["starting_after"] = after
                page = _dict(await client.v1.payment_intents.list_async(params=intents))
                records.extend(record_of_payment_intent(pi) for pi in page["data"])
                if not page.get("has_more") or not page["data"]:
                    break
                after = page["data"][-1]["id"]
            after = None
            while True:
                refunds: RefundListParams = {"limit": 100}
                if not self._emulator:
                    refunds["created"] = {"gte": gte, "lt": lt}
                if after:
                    refunds["starting_after"] = after
                page = _dict(await client.v1.refunds.list_async(params=refunds))
                records.extend(record_of_refund(r) for r in page["data"])
                if not page.get("has_more") or not page["data"]:
                    break
                after = page["data"][-1]["id"]
        except Exception as exc:  # never a partial list: the run fails and says why
            raise RecordsUnavailable(result_from_error(exc, side_effect=False).message or type(exc).__name__) from None
        return [r for r in records if start <= r.created < end]

    # -- inbound notifications -------------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        raise InvalidNotification("Stripe's events arrive at POST /webhooks/stripe (services/stripe_webhooks.py)")


def _as_transient(result: ProcessorResult) -> ProcessorResult:
    return ProcessorResult(Outcome.TRANSIENT, message=result.message)


def _with_reference(result: ProcessorResult, intent: str) -> ProcessorResult:
    if result.processor_reference:
        return result
    return ProcessorResult(
        result.outcome,
        processor_reference=intent,
        failure_code=result.failure_code,
        decline_code=result.decline_code,
        message=result.message,
    )


def _not_yet(intent: str) -> ProcessorResult:
    return ProcessorResult(Outcome.NOT_FOUND, processor_reference=intent, message="not done at Stripe")


def _cancel_result(result: ProcessorResult) -> ProcessorResult:
    """A cancel's answer is the PaymentIntent: canceled means the cancel succeeded."""
    if result.outcome is Outcome.DECLINED and result.failure_code == "canceled":
        return ProcessorResult(Outcome.APPROVED, processor_reference=result.processor_reference)
    return ProcessorResult(Outcome.UNKNOWN, processor_reference=result.processor_reference, message="not canceled")


def from_settings(settings: Settings) -> StripeProcessor | None:
    """The Stripe client, on while TENDER_STRIPE_SECRET_KEY is set (processors/registry.py)."""
    key = settings.stripe_secret_key
    if key is None or not key.get_secret_value():
        return None
    if os.environ.get("STRIPE_LOG", "").lower() == "debug" or stripe.log == "debug":
        # stripe-python would print every request's body, card numbers included, to stderr.
        raise ValueError("STRIPE_LOG=debug prints card numbers to stderr: unset it to run the stripe processor")
    return StripeProcessor(
        key.get_secret_value(),
        api_base=settings.stripe_api_base or DEFAULT_API_BASE,
        timeout=settings.processor_timeout_seconds,
    )
