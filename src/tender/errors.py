"""Errors that reach a client: each class carries its HTTP status, error type and code.

One handler in `tender.api.errors` renders them all as API.md's error body. Domain rule violations
(`tender.domain.errors`) know nothing of HTTP; that handler maps them to 400.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TenderError(Exception):
    status_code: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.extra = extra

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


class InvalidRequest(TenderError):
    status_code = 400
    type = "invalid_request_error"
    default_code = "parameter_invalid"


class PayloadTooLarge(TenderError):
    status_code = 413
    type = "invalid_request_error"
    default_code = "body_too_large"


class AuthenticationFailed(TenderError):
    status_code = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(TenderError):
    status_code = 403
    type = "permission_error"
    default_code = "forbidden"


class NotFound(TenderError):
    status_code = 404
    type = "not_found"
    default_code = "resource_missing"


class Conflict(TenderError):
    status_code = 409
    type = "invalid_request_error"
    default_code = "conflict"


class DuplicateReference(Conflict):
    default_code = "duplicate_reference"


class IdempotencyInProgress(TenderError):
    status_code = 409
    type = "idempotency_error"
    default_code = "idempotency_key_in_use"


class IdempotencyMismatch(TenderError):
    status_code = 422
    type = "idempotency_error"
    default_code = "idempotency_key_reused"


class RateLimited(TenderError):
    """Too many of something in a sliding window (card declines: services/velocity.py). Rendered with a
    `Retry-After` header: the seconds until the next try can pass."""

    status_code = 429
    type = "rate_limit_error"
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(TenderError):
    status_code = 503
    type = "api_error"
    default_code = "service_unavailable"
