"""Errors that reach a client: one class per error code, each carrying its HTTP status, error type and code.

Raise the class that names what went wrong (`raise AmountTooLarge("amount: ...", param="amount")`); its
docstring is what the OpenAPI document says of the code (`tender.api.openapi.responses` builds a route's
`responses=` from the classes it can raise). A subclass of a status's base (InvalidRequest, NotFound, ...) is
caught with it. One handler in `tender.api.errors` renders them all as API.md's error body. Domain rule
violations (`tender.domain.errors`) know nothing of HTTP; that handler answers them 400 with the rule's own
code (DomainRuleViolated).
"""

from __future__ import annotations

from typing import Any

from tender.domain.errors import DomainError, InvalidTransition


class TenderError(Exception):
    """An internal error: nothing about it is shown."""

    status_code: int = 500
    type: str = "api_error"
    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.extra = extra

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}

    def headers(self) -> dict[str, str] | None:
        return None


# -- 400 -----------------------------------------------------------------------------------------------


class InvalidRequest(TenderError):
    """A parameter is invalid; `param` names it."""

    status_code = 400
    type = "invalid_request_error"
    code = "parameter_invalid"


class ParameterMissing(InvalidRequest):
    """A required parameter is missing; `param` names it."""

    code = "parameter_missing"


class ParameterUnknown(InvalidRequest):
    """The request has a parameter this operation does not take; `param` names it (if it could not be a card
    number)."""

    code = "parameter_unknown"


class InvalidCharacter(InvalidRequest):
    """A value (or the path, a query parameter or a header) holds a NUL character; `param` says where."""

    code = "invalid_character"


class InvalidJson(InvalidRequest):
    """The body is not valid JSON."""

    code = "invalid_json"


class NoSuchObject(InvalidRequest):
    """A parameter names an object that does not exist, or is another merchant's; `param` names it."""

    code = "resource_missing"


class DomainRuleViolated(InvalidRequest):
    """The input breaks a rule of the domain (a card's number, expiry or CVC, an amount, a currency, a status
    change); the code is the rule's own: `invalid_number`, `incorrect_number`, `invalid_expiry_month`,
    `invalid_expiry_year`, `invalid_cvc`, `invalid_currency`, `parameter_invalid`, `payment_unexpected_state`."""

    code = ""  # each error's is its rule's (tender.domain.errors), set below

    def __init__(self, error: DomainError) -> None:
        # A refused status change names no parameter: the request was well formed, the payment's state is not.
        super().__init__(error.message, param=None if isinstance(error, InvalidTransition) else error.param)
        self.code = error.code


class PaymentUnexpectedState(InvalidRequest):
    """The payment's status does not allow this operation."""

    code = "payment_unexpected_state"


class PaymentOperationInProgress(InvalidRequest):
    """A capture or cancel of this payment is already in progress."""

    code = "payment_operation_in_progress"


class AmountTooLarge(InvalidRequest):
    """`amount` is more than the payment allows: its authorized amount, or what is left to refund."""

    code = "amount_too_large"


class ChargeAlreadyRefunded(InvalidRequest):
    """The payment is refunded in full already."""

    code = "charge_already_refunded"


class SubscriptionUnexpectedState(InvalidRequest):
    """The subscription's status does not allow this operation (a canceled one changes no more)."""

    code = "subscription_unexpected_state"


class SessionNotOpen(InvalidRequest):
    """Only an open checkout session can be expired."""

    code = "session_not_open"


class PaymentInProgress(InvalidRequest):
    """A payment of this checkout session is in progress: try again when it ends."""

    code = "payment_in_progress"


class TooManyAttempts(InvalidRequest):
    """The checkout session takes no more payments (card testing: TENDER_CHECKOUT_MAX_PAYMENTS)."""

    code = "too_many_attempts"


class UrlInvalid(InvalidRequest):
    """The webhook endpoint's `url` is not a public http(s) URL."""

    code = "url_invalid"


class NoWebhookEndpoint(InvalidRequest):
    """No enabled webhook endpoint listens to this event."""

    code = "no_webhook_endpoint"


class SettlementDateInFuture(InvalidRequest):
    """Payables cannot be settled before their date: `as_of` is later than today."""

    code = "settlement_date_in_future"


class DeadLetterResolved(InvalidRequest):
    """The dead letter is resolved: the work got done."""

    code = "dead_letter_resolved"


class DeadLetterUnsupported(InvalidRequest):
    """Dead letters of this kind cannot be retried."""

    code = "dead_letter_unsupported"


class NotificationRejected(InvalidRequest):
    """A processor's notification whose signature does not verify (or whose shape is wrong)."""

    code = "invalid_signature"


class WebhookNotConfigured(InvalidRequest):
    """A processor's webhook whose verification secret is not set (TENDER_STRIPE_WEBHOOK_SECRET): nothing can
    be verified, so nothing is stored. A 400, not a 404: the route exists, and Stripe shows this message."""

    code = "webhook_not_configured"


class PaymentMethodUnexpectedState(InvalidRequest):
    """The saved payment method cannot be used so: it is attached to another customer (detach it first)."""

    code = "payment_method_unexpected_state"


# -- 401, 403, 404, 405 ----------------------------------------------------------------------------------


class AuthenticationFailed(TenderError):
    """The API key is not valid."""

    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class MissingApiKey(AuthenticationFailed):
    """No API key: send `Authorization: Bearer sk_test_...`."""

    code = "missing_api_key"


class AdminDisabled(AuthenticationFailed):
    """The admin API is off: the operator has not set TENDER_ADMIN_KEY."""

    code = "admin_disabled"


class PermissionDenied(TenderError):
    """The key may not do this."""

    status_code = 403
    type = "permission_error"
    code = "forbidden"


class SecretKeyRequired(PermissionDenied):
    """A publishable key cannot do this: use the secret key (`sk_...`)."""

    code = "secret_key_required"


class NotFound(TenderError):
    """No such object (or another merchant's), or no such route."""

    status_code = 404
    type = "not_found"
    code = "resource_missing"


class MethodNotAllowed(InvalidRequest):
    """The path exists, but not with this method."""

    status_code = 405
    code = "method_not_allowed"


# -- 409, 413, 422, 429, 503 ------------------------------------------------------------------------------


class Conflict(TenderError):
    """The request conflicts with the current state of an object."""

    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class DuplicateReference(Conflict):
    """`reference` is taken by another payment (`payment`) or checkout session (`checkout_session`)."""

    code = "duplicate_reference"


class CheckoutSessionBusy(Conflict):
    """The checkout session of this reference changed meanwhile: try again."""

    code = "checkout_session_busy"


class IdempotencyInProgress(TenderError):
    """A request with this Idempotency-Key is still running: try again shortly."""

    status_code = 409
    type = "idempotency_error"
    code = "idempotency_key_in_use"


class PayloadTooLarge(TenderError):
    """The body is larger than TENDER_MAX_BODY_BYTES (1 MiB)."""

    status_code = 413
    type = "invalid_request_error"
    code = "body_too_large"


class IdempotencyMismatch(TenderError):
    """This Idempotency-Key was used with a different request."""

    status_code = 422
    type = "idempotency_error"
    code = "idempotency_key_reused"


class RateLimited(TenderError):
    """Too many of something in a sliding window; nothing was written. `Retry-After` says in how many seconds
    the next try can pass."""

    status_code = 429
    type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManyDeclines(RateLimited):
    """Too many declined payments of this card (or from this checkout session or address) recently
    (services/velocity.py); nothing was written. `Retry-After` says when the next can pass."""

    code = "too_many_declines"


class ServiceUnavailable(TenderError):
    """The database is out of reach (restarting, or the pool exhausted): try again after `Retry-After`."""

    status_code = 503
    type = "api_error"
    code = "service_unavailable"


class ProcessorUnavailable(ServiceUnavailable):
    """The processor gave no usable answer (unreachable, busy, failing): nothing is lost, try again later."""

    code = "processor_unavailable"


class HttpError(TenderError):
    """Any other HTTP error the framework raised, with its own status."""

    type = "invalid_request_error"
    code = "http_error"

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code
