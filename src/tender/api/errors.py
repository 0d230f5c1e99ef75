"""One place renders every error as API.md's body: {"error": {"type", "code", "message", "param"?}}."""

from __future__ import annotations

import logging
import traceback

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tender.api import retry
from tender.api.responses import JSON
from tender.domain.errors import DomainError
from tender.errors import DomainRuleViolated, HttpError, MethodNotAllowed, NotFound, TenderError
from tender.services.validation import error_from

log = logging.getLogger(__name__)

_LOCATIONS = {"body", "query", "path", "header"}


def route_of(request: Request | Scope) -> str:
    """The matched route's template (`/v1/payments/{payment_id}`), never the path sent, which may hold anything."""
    scope = request.scope if isinstance(request, Request) else request
    if "route" in scope:
        return str(getattr(scope["route"], "path", "(no route)"))
    # Routing wrote into a copy of the scope (a middleware between here and the router made one): match again.
    pending = list(getattr(scope.get("app"), "routes", []))
    while pending:
        route = pending.pop(0)
        included = getattr(route, "original_router", None)  # FastAPI's view of an included router
        if included is not None:
            pending[:0] = included.routes
        elif (regex := getattr(route, "path_regex", None)) is not None and regex.match(scope["path"]):
            return str(getattr(route, "path", "(no route)"))
    return "(no route)"


def where(exc: BaseException) -> str:
    """An exception and its causes as types and code locations, without their messages: a message can
    carry request data (a psycopg error quotes the value PostgreSQL refused, its context the parameters)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = " < ".join(
            f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno} {f.name}"
            for f in reversed(traceback.extract_tb(current.__traceback__))
        )
        sqlstate = getattr(current, "sqlstate", None)
        kind = f"{type(current).__module__}.{type(current).__qualname__}" + (f" [{sqlstate}]" if sqlstate else "")
        parts.append(f"{kind} at {frames or '?'}")
        current = current.__cause__ or current.__context__
    return "; caused by ".join(parts)


def render(error: TenderError, headers: dict[str, str] | None = None) -> JSON:
    return JSON(error.body(), status_code=error.status_code, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(TenderError)
    async def tender_error(_: Request, exc: TenderError) -> JSON:
        return render(exc, exc.headers())

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSON:
        return render(DomainRuleViolated(exc))

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
            # Neither the path nor the method is quoted back: either may hold anything (a card number).
            return render(NotFound("Unrecognized request URL: no route has this method and path."))
        if exc.status_code == 405:
            return render(MethodNotAllowed("This method is not allowed on this path."))
        return render(HttpError(str(exc.detail), status_code=exc.status_code))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> Response:
        # The client hung up mid-request: nobody reads this answer, and nothing was written.
        log.info("client disconnected during %s %s", request.method, route_of(request))
        return Response(status_code=400)

    # The database restarting or out of reach (the pool's timeouts too): 503 with Retry-After, never a 500;
    # after a lost connection, a request safe to repeat runs once more (api/retry.py).
    app.add_exception_handler(psycopg.OperationalError, retry.database_unavailable)

    # Not an exception handler: Starlette re-raises after its 500 handler so that the server logs the
    # exception, message and all (a psycopg error's message quotes the value PostgreSQL refused).
    app.add_middleware(UnexpectedErrors)


class UnexpectedErrors:
    """An exception no handler took: a 500 without details, logged by type, route and code location only
    (an exception's text could carry request data), and raised no further."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            log.error("unhandled %s on %s %s: %s", type(exc).__name__, scope["method"], route_of(scope), where(exc))
            if not started:
                await render(TenderError("An internal error occurred."))(scope, receive, send)  # a plain 500
