"""One place renders every error as API.md's body: {"error": {"type", "code", "message", "param"?}}."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from tender.api import retry
from tender.api.responses import JSON
from tender.domain.errors import DomainError, InvalidTransition
from tender.errors import InvalidRequest, NotFound, TenderError
from tender.services.validation import error_from

log = logging.getLogger(__name__)

_LOCATIONS = {"body", "query", "path", "header"}


def render(error: TenderError, headers: dict[str, str] | None = None) -> JSON:
    return JSON(error.body(), status_code=error.status_code, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(TenderError)
    async def tender_error(_: Request, exc: TenderError) -> JSON:
        return render(exc)

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSON:
        code = exc.code
        if isinstance(exc, InvalidTransition):
            return render(InvalidRequest(exc.message, code=code))
        return render(InvalidRequest(exc.message, code=code, param=exc.param))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSON:
        first = dict(exc.errors()[0])
        loc = tuple(first.get("loc", ()))
        first["loc"] = loc[1:] if loc and loc[0] in _LOCATIONS else loc
        first.pop("input", None)
        return render(error_from(first))  # type: ignore[arg-type]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSON:
        if exc.status_code == 404:
            return render(NotFound(f"Unrecognized request URL ({request.method} {request.url.path})"))
        if exc.status_code == 405:
            err = InvalidRequest(f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed")
            return JSON(err.body(), status_code=405)
        return JSON(
            {"error": {"type": "invalid_request_error", "code": "http_error", "message": str(exc.detail)}},
            status_code=exc.status_code,
        )

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> Response:
        # The client hung up mid-request: nobody reads this answer, and nothing was written.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=400)

    # The database restarting or out of reach (the pool's timeouts too): 503 with Retry-After, never a 500;
    # after a lost connection, a request safe to repeat runs once more (api/retry.py).
    app.add_exception_handler(psycopg.OperationalError, retry.database_unavailable)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSON:
        # Logged by type and route only: an exception's text could carry request data.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
        return JSON(
            {"error": {"type": "api_error", "code": "internal_error", "message": "An internal error occurred."}},
            status_code=500,
        )
