"""One more try for a request whose database connection broke under it, when running it again is safe.

After a PostgreSQL restart, a request that was using a connection at that moment fails with the connection
(the pool's check keeps dead idle connections from being handed out; one that dies in use cannot be saved).
The error handler (`tender.api.errors`) answers such a failure 503 with `Retry-After` and notes on the
request whether running it again is safe; this middleware then drops that answer, unsent, and runs the
request once more on a fresh connection, with the same body. Safe means:

- GET and HEAD: they change nothing that matters twice (a processor look-up only applies the truth).
- A request carrying an `Idempotency-Key` to a route that takes one (every such route goes through
  `services/idempotency.py`): it commits its change and its stored answer in one transaction under the
  key. If the connection broke before COMMIT, nothing was written and the second run is the first; if it
  broke during COMMIT (the one case whose outcome is unknown), the second run either replays the
  committed answer (`Idempotent-Replayed: true`) or, if the commit did not happen, does the work once.

Anything else (a POST without a key, a DELETE, the fee plan's PUT, the hosted page's forms, processor
notifications) is not repeated: the client gets the 503, which says the request may or may not have been
applied. Only one more run: a database still down answers 503 rather than keeping the client waiting.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tender.api.responses import JSON
from tender.errors import ServiceUnavailable
from tender.store.db import connection_lost

log = logging.getLogger(__name__)

# What a 503 tells a client: PostgreSQL restarts in a second or two, and the pool reconnects soon after.
RETRY_AFTER_SECONDS = 2

_SCOPE_KEY = "tender.retry"
_SAFE_METHODS = frozenset({"GET", "HEAD"})
IDEMPOTENCY_HEADER = "idempotency-key"


@dataclass(slots=True)
class _Attempt:
    retry: bool = False  # set by the error handler: the connection broke and the request may run again


def may_repeat(request: Request) -> bool:
    """True when running this request a second time cannot apply it twice (see the module docstring)."""
    if request.method in _SAFE_METHODS:
        return True
    return bool(request.headers.get(IDEMPOTENCY_HEADER)) and _takes_idempotency_key(request)


def _takes_idempotency_key(request: Request) -> bool:
    """The matched route declares the `Idempotency-Key` header (and so runs under it): as a parameter, or in its
    OpenAPI parameters when it reads its headers itself (POST /v1/payments)."""
    route = request.scope.get("route")
    params = getattr(getattr(route, "dependant", None), "header_params", ())
    if any(getattr(p, "alias", "").lower() == IDEMPOTENCY_HEADER for p in params):
        return True
    documented = (getattr(route, "openapi_extra", None) or {}).get("parameters", ())
    return any(p.get("in") == "header" and str(p.get("name", "")).lower() == IDEMPOTENCY_HEADER for p in documented)


def retry_after_lost_connection(request: Request) -> bool:
    """Ask the middleware to run this request again; False when it will not (not installed, not safe,
    or this already is the second run)."""
    attempt = request.scope.get(_SCOPE_KEY)
    if not isinstance(attempt, _Attempt) or not may_repeat(request):
        return False
    attempt.retry = True
    return True


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """The handler for psycopg's OperationalError (the pool's timeouts included): 503 `service_unavailable`
    with `Retry-After`, never a 500; or, after a lost connection where it is safe, one more run."""
    lost = connection_lost(exc)
    if not (lost and retry_after_lost_connection(request)):
        # By type and SQLSTATE only: the message could quote request data.
        sqlstate = getattr(exc, "sqlstate", None)
        kind = type(exc).__name__ + (f" [{sqlstate}]" if sqlstate else "")
        log.warning("%s %s: database unavailable (%s); answered 503", request.method, _route(request.scope), kind)
    message = "The database is unavailable for a moment; retry shortly."
    if request.method not in _SAFE_METHODS:
        # A lost connection leaves the outcome of a COMMIT unknown, and a timeout may follow a committed step.
        message = "The database is unavailable for a moment; this request may or may not have been applied."
        if _takes_idempotency_key(request):
            message += (
                " Retry it with the same Idempotency-Key."
                if request.headers.get(IDEMPOTENCY_HEADER)
                else " An Idempotency-Key makes a retry safe."
            )
    error = ServiceUnavailable(message)
    return JSON(error.body(), status_code=error.status_code, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class RetryOnLostConnection:
    """Pure ASGI (no BaseHTTPMiddleware): streaming answers pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body: list[Message] = []  # the request's body as the first run read it, for the second
        gone = False

        async def recording_receive() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.request":
                body.append(message)
            else:
                gone = True
            return message

        attempt = _Attempt()
        dropped = False

        async def holding_send(message: Message) -> None:
            nonlocal dropped
            if message["type"] == "http.response.start" and attempt.retry:
                dropped = True  # the handler's 503: replaced by the second run's answer
            if not dropped:
                await send(message)

        # The first run gets the server's scope itself (the middlewares outside see the route it matched);
        # a second run starts from a copy of it as it came: routing and request state write into the scope.
        pristine = _copy(scope)
        scope[_SCOPE_KEY] = attempt
        await self.app(scope, recording_receive, holding_send)
        if not dropped or gone:
            return
        log.warning("%s %s: database connection lost; running it once more", scope["method"], _route(scope))
        replay = deque(body)

        async def replaying_receive() -> Message:
            return replay.popleft() if replay else await receive()

        await self.app(pristine, replaying_receive, send)


def _copy(scope: Scope) -> Scope:
    copy = dict(scope)
    if isinstance(scope.get("state"), dict):
        copy["state"] = dict(scope["state"])
    return copy


def _route(scope: Scope) -> str:
    """The route's template for the log, never the raw path (it could hold anything a client sent)."""
    route = scope.get("route")
    return str(getattr(route, "path", "(unrouted)"))
