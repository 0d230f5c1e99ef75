"""The simulator's HTTP API: a card acquirer with test cards, 3-D Secure, idempotency and faults, and a
provider of alternative payment methods (UPI, wallets, net banking, buy now pay later; see `apm`).

Endpoints
- `POST /v1/authorizations` (a `card`, or a `method` such as {"type": "upi", "upi": {"vpa"}}),
  `GET /v1/authorizations/{reference}`
- `POST /v1/authorizations/{reference}/capture`, `.../cancel`, `POST /v1/refunds`,
  `GET /v1/operations/{reference}`
- `GET /v1/records?created_gte=&created_lt=&limit=&starting_after=`: authorizations and operations made in a
  time window (unix seconds), oldest first, paginated: what Tender's reconciliation reads
- `GET|POST /3ds/{sim_id}`: the shopper's challenge page
- `GET|POST /apm/{sim_id}`: the shopper's approval page of an APM (for UPI, their UPI app)
- `GET|POST /_sim/config`, `GET /_sim/authorizations`, `GET /_sim/operations`, `GET /_sim/stats`,
  `GET /healthz`: for tests and operators, never faulted
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.responses import JSONResponse as _StdlibJSONResponse
from starlette.routing import Route

from tender.simulator import apm, cards, pages
from tender.simulator.config import ConfigError, SimulatorConfig, updated
from tender.simulator.faults import DroppedResponse, FaultPlan, Stats
from tender.simulator.notify import Notifier
from tender.simulator.requests import (
    AuthorizationInput,
    BadRequest,
    CardInput,
    OperationInput,
    json_object,
    parse_authorization,
    parse_operation,
)
from tender.simulator.store import (
    AuthorizationRecord,
    OperationDecision,
    OperationRecord,
    Registration,
    SimulatorStore,
)

log = logging.getLogger("tender.simulator")

REPLAYED_HEADERS = {"Idempotent-Replayed": "true"}


class JSONResponse(_StdlibJSONResponse):
    """Starlette's JSON response encoded by orjson (compact, UTF-8, no NaN, like Starlette's own): the stdlib's
    encoder was about a tenth of the simulator's CPU under load (issue 16)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(status: int, type_: str, code: str, message: str, param: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"type": type_, "code": code, "message": message}
    if param is not None:
        error["param"] = param
    return JSONResponse({"error": error}, status_code=status)


def _bad_request(exc: BadRequest) -> JSONResponse:
    return _error(400, "invalid_request_error", "parameter_invalid", exc.message, exc.param)


def _mismatch() -> JSONResponse:
    return _error(
        409, "idempotency_error", "idempotency_mismatch",
        "This reference was already used with a different request.",
    )  # fmt: skip


class Simulator:
    """The simulator's state (config, record, counters, notifier) and its request handlers."""

    def __init__(self, config: SimulatorConfig, notify_client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.store = SimulatorStore(config.db_path)
        self.stats = Stats()
        self.rng = random.Random(config.seed)
        self.notifier = Notifier(lambda: (self.config.notify_url, self.config.notify_secret), notify_client)
        self._timers: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        for timer in list(self._timers):
            timer.cancel()
        await self.notifier.aclose()
        self.store.close()

    def reconfigure(self, changes: Mapping[str, Any]) -> None:
        new = updated(self.config, changes)
        if "seed" in changes:
            self.rng.seed(new.seed)
        self.config = new

    # -- views ----------------------------------------------------------------------------------

    def authorization_object(self, auth: AuthorizationRecord) -> dict[str, Any]:
        redirect = None
        if auth.status == cards.ACTION_REQUIRED:
            page = "3ds" if auth.method == "card" else "apm"
            redirect = f"{self.config.public_url}/{page}/{auth.id}"
        is_card = auth.method == "card"
        return {
            "id": auth.id,
            "object": "authorization",
            "reference": auth.reference,
            "payment": auth.payment,
            "amount": auth.amount,
            "currency": auth.currency,
            "status": auth.status,
            "captured": auth.captured,
            "amount_captured": auth.amount_captured,
            "amount_refunded": auth.amount_refunded,
            "failure_code": auth.failure_code,
            "decline_code": auth.decline_code,
            "message": auth.message,
            "redirect_url": redirect,
            "card": {"brand": auth.card_brand, "last4": auth.card_last4, "funding": auth.card_funding or None}
            if is_card
            else None,
            "method": {"type": "card"} if is_card else {"type": auth.method, auth.method: auth.method_details},
            "created": auth.created,
        }

    @staticmethod
    def operation_object(op: OperationRecord) -> dict[str, Any]:
        return {
            "id": op.id,
            "object": op.kind,
            "reference": op.reference,
            "authorization": op.authorization_id,
            "amount": op.amount,
            "currency": op.currency,
            "status": op.status,
            "failure_code": op.failure_code,
            "message": op.message,
            "created": op.created,
        }

    # -- fault injection ------------------------------------------------------------------------

    async def _charging(self, request: Request, process: Callable[[Request, dict[str, Any]], Response]) -> Response:
        """Run `process` (synchronous, so its check-and-record is atomic) under the configured faults."""
        cfg = self.config
        self.stats.requests += 1
        plan = FaultPlan(
            self.rng,
            latency_ms=cfg.latency_ms,
            latency_jitter_ms=cfg.latency_jitter_ms,
            error_rate=cfg.error_rate,
            drop_rate=cfg.drop_rate,
            timeout_rate=cfg.timeout_rate,
            drop_after_charge_share=cfg.drop_after_charge_share,
        )
        await plan.delay()
        if plan.error:
            self.stats.faults.error += 1
            return _error(503, "api_error", "service_unavailable", "Simulated outage: nothing was done.")
        try:
            body = json_object(await request.body())
        except BadRequest as exc:
            return _bad_request(exc)
        except ClientDisconnect:  # the caller gave up (its timeout, or it died) before sending it all
            log.debug("client went away before its request arrived; nothing was done")
            return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
        if plan.drop and not plan.drop_after_charge:
            self.stats.faults.drop += 1
            log.debug("fault: connection dropped before processing")
            return DroppedResponse()
        response = process(request, body)
        if plan.drop:
            self.stats.faults.drop += 1
            log.debug("fault: connection dropped after processing")
            return DroppedResponse()
        if plan.timeout:
            self.stats.faults.timeout += 1
            log.debug("fault: answering after %.1f s", cfg.timeout_seconds)
            await asyncio.sleep(cfg.timeout_seconds)
        return response

    # -- authorizations -------------------------------------------------------------------------

    async def create_authorization(self, request: Request) -> Response:
        return await self._charging(request, self._authorize)

    def _authorize(self, request: Request, body: dict[str, Any]) -> Response:
        try:
            inp = parse_authorization(body, request.headers.get("idempotency-key"))
        except BadRequest as exc:
            return _bad_request(exc)
        record = self._new_record(inp)
        stored, registration = self.store.register_authorization(record)
        if registration is Registration.MISMATCH:
            self.stats.mismatches += 1
            return _mismatch()
        if registration is Registration.REPLAYED:
            self.stats.replays += 1
            return JSONResponse(self.authorization_object(self._decide_due(stored)), headers=REPLAYED_HEADERS)
        obj = self.authorization_object(stored)
        self.stats.charged += 1
        log.debug("authorization %s reference=%s status=%s", stored.id, stored.reference, stored.status)
        if self.config.notify_on_create:
            self.notifier.publish(obj)
        if stored.decide_at is not None:
            self._decide_later(stored.id, self.config.upi_delay_ms / 1000)
        return JSONResponse(obj)

    def _new_record(self, inp: AuthorizationInput) -> AuthorizationRecord:
        """The authorization as first decided: by the test-card table, or waiting for an APM's shopper."""
        now = int(time.time())
        decide_at = None
        if inp.card is not None:
            decision = cards.decide(inp.card.number, inp.card.exp_month, inp.card.exp_year)
            once = inp.card.number == cards.SUCCEEDS_ONCE_CARD and decision.status == cards.APPROVED
            if once and not self.store.first_charge(_card_key(inp.card), inp.reference):
                decision = cards.DECLINED_AFTER_ONCE
            brand, last4 = cards.card_brand(inp.card.number), inp.card.number[-4:]
            funding = cards.card_funding(inp.card.number)
        else:
            assert inp.method is not None
            decision = apm.initial(inp.method.type)
            brand = last4 = funding = ""
            if apm.automatic(inp.method.type, inp.method.details) is not None:
                decide_at = int(time.time() * 1000) + self.config.upi_delay_ms
        captured = decision.status == cards.APPROVED and inp.capture
        return AuthorizationRecord(
            id="sim_" + secrets.token_hex(12),
            reference=inp.reference,
            payment=inp.payment,
            amount=inp.amount,
            currency=inp.currency,
            capture=inp.capture,
            status=decision.status,
            captured=captured,
            amount_captured=inp.amount if captured else 0,
            failure_code=decision.failure_code,
            decline_code=decision.decline_code,
            message=decision.message,
            card_brand=brand,
            card_last4=last4,
            card_funding=funding,
            return_url=inp.return_url,
            request_hash=inp.request_hash(),
            created=now,
            updated=now,
            method=inp.method_type,
            method_details=inp.method.details if inp.method else None,
            decide_at=decide_at,
        )

    async def get_authorization(self, request: Request) -> Response:
        auth = self.store.authorization_by_reference(request.path_params["reference"])
        if auth is None:
            return _error(404, "not_found", "not_found", "No authorization has this reference.")
        return JSONResponse(self.authorization_object(self._decide_due(auth)))

    # -- automatic decisions (test UPI addresses) -------------------------------------------------

    def _decide_later(self, sim_id: str, delay_seconds: float) -> None:
        async def run() -> None:
            await asyncio.sleep(delay_seconds)
            auth = self.store.authorization_by_id(sim_id)
            if auth is not None:
                self._decide_due(auth, force=True)

        timer = asyncio.get_running_loop().create_task(run())
        self._timers.add(timer)  # the loop keeps only weak references to tasks
        timer.add_done_callback(self._timers.discard)

    def _decide_due(self, auth: AuthorizationRecord, *, force: bool = False) -> AuthorizationRecord:
        """Apply a test UPI address's own decision once it is due, and notify it; the record as it now is.

        The timer normally does it; a look-up does it too, so a restart (which loses timers) only delays it.
        """
        if auth.status != cards.ACTION_REQUIRED or auth.decide_at is None:
            return auth
        if not force and time.time() * 1000 < auth.decide_at:
            return auth
        decision = apm.automatic(auth.method, auth.method_details or {})
        if decision is None:
            return auth
        decided, changed = self.store.resolve_pending(auth.id, decision, int(time.time()))
        if decided is None:
            return auth
        if changed:  # once only: the timer and a look-up may both get here
            log.info("UPI collect request %s: %s by the test address", decided.id, decided.status)
            self.notifier.publish(self.authorization_object(decided))
        return decided

    # -- 3-D Secure -----------------------------------------------------------------------------

    async def challenge_page(self, request: Request) -> Response:
        auth = self.store.authorization_by_id(request.path_params["sim_id"])
        if auth is None or auth.method != "card":
            return HTMLResponse(pages.not_found_page(), status_code=404)
        return HTMLResponse(pages.challenge_page(auth))

    async def challenge_decision(self, request: Request) -> Response:
        choice = await _decision(request)
        if choice is None:
            return HTMLResponse("decision must be approve or decline", status_code=400)
        auth = self.store.authorization_by_id(request.path_params["sim_id"])
        if auth is None or auth.method != "card":
            return HTMLResponse(pages.not_found_page(), status_code=404)
        decision = cards.CHALLENGE_APPROVED if choice == "approve" else cards.CHALLENGE_FAILED
        return self._decided(auth, decision, f"3-D Secure {choice}", pages.done_page)

    def _decided(
        self,
        auth: AuthorizationRecord,
        decision: cards.Decision,
        what: str,
        done_page: Callable[[AuthorizationRecord], str],
    ) -> Response:
        """Apply the shopper's decision once, notify it, and send them back to the shop."""
        decided, changed = self.store.resolve_pending(auth.id, decision, int(time.time()))
        auth = decided or auth
        if changed:  # a second decision is ignored, and so is not notified again
            log.info("%s for authorization %s", what, auth.id)
            self.notifier.publish(self.authorization_object(auth))
        if auth.return_url:
            return RedirectResponse(auth.return_url, status_code=303)
        return HTMLResponse(done_page(auth))

    # -- APM approval pages -----------------------------------------------------------------------

    def _apm_record(self, request: Request) -> AuthorizationRecord | None:
        auth = self.store.authorization_by_id(request.path_params["sim_id"])
        return None if auth is None or auth.method == "card" else self._decide_due(auth)

    async def apm_page(self, request: Request) -> Response:
        auth = self._apm_record(request)
        if auth is None:
            return HTMLResponse(pages.not_found_page("payment approval"), status_code=404)
        automatic = apm.automatic(auth.method, auth.method_details or {}) is not None
        return HTMLResponse(pages.apm_page(auth, automatic=automatic))

    async def apm_decision(self, request: Request) -> Response:
        choice = await _decision(request)
        if choice is None:
            return HTMLResponse("decision must be approve or decline", status_code=400)
        auth = self._apm_record(request)
        if auth is None:
            return HTMLResponse(pages.not_found_page("payment approval"), status_code=404)
        automatic = apm.automatic(auth.method, auth.method_details or {}) is not None
        if automatic and auth.status == cards.ACTION_REQUIRED:
            # success@upi and failure@upi answer on their own; a click must not pre-empt them.
            return HTMLResponse(pages.apm_page(auth, automatic=True), status_code=409)
        decision = apm.APPROVED_BY_SHOPPER if choice == "approve" else apm.declined(auth.method)
        return self._decided(auth, decision, f"{auth.method} {choice}", pages.apm_done_page)

    # -- captures, cancels, refunds -------------------------------------------------------------

    async def capture(self, request: Request) -> Response:
        return await self._charging(request, self._operation("capture"))

    async def cancel(self, request: Request) -> Response:
        return await self._charging(request, self._operation("cancel"))

    async def refund(self, request: Request) -> Response:
        return await self._charging(request, self._operation("refund"))

    def _operation(self, kind: str) -> Callable[[Request, dict[str, Any]], Response]:
        def process(request: Request, body: dict[str, Any]) -> Response:
            try:
                inp = parse_operation(
                    kind, body, request.headers.get("idempotency-key"), request.path_params.get("reference")
                )
            except BadRequest as exc:
                return _bad_request(exc)
            record = OperationRecord(
                id="simop_" + secrets.token_hex(12),
                reference=inp.reference,
                kind=kind,
                authorization_id="",
                amount=0,
                currency="",
                status="",
                failure_code=None,
                message=None,
                request_hash=inp.request_hash(),
                created=int(time.time()),
            )
            op, registration = self.store.register_operation(
                record, inp.authorization, lambda auth: _operation_rule(inp, auth)
            )
            if registration is Registration.NOT_FOUND or op is None:
                return _error(404, "not_found", "authorization_not_found", "No such authorization.")
            if registration is Registration.MISMATCH:
                self.stats.mismatches += 1
                return _mismatch()
            if registration is Registration.REPLAYED:
                self.stats.replays += 1
                return JSONResponse(self.operation_object(op), headers=REPLAYED_HEADERS)
            self.stats.operations += 1
            return JSONResponse(self.operation_object(op))

        return process

    async def get_operation(self, request: Request) -> Response:
        op = self.store.operation_by_reference(request.path_params["reference"])
        if op is None:
            return _error(404, "not_found", "not_found", "No operation has this reference.")
        return JSONResponse(self.operation_object(op))

    # -- records, for reconciliation --------------------------------------------------------------

    async def list_records(self, request: Request) -> Response:
        query = request.query_params
        try:
            created_gte = _int_param(query, "created_gte", 0)
            created_lt = _int_param(query, "created_lt", 2**53)
            limit = _int_param(query, "limit", 100)
        except BadRequest as exc:
            return _bad_request(exc)
        if not 1 <= limit <= 1000:
            return _error(400, "invalid_request_error", "parameter_invalid", "limit: 1 to 1000.", "limit")
        starting_after = query.get("starting_after") or None
        records, has_more = self.store.list_records(
            created_gte=created_gte, created_lt=created_lt, limit=limit, starting_after=starting_after
        )
        data = [
            self.authorization_object(r) if isinstance(r, AuthorizationRecord) else self.operation_object(r)
            for r in records
        ]
        return JSONResponse({"object": "list", "data": data, "has_more": has_more})

    # -- admin ----------------------------------------------------------------------------------

    async def get_config(self, request: Request) -> Response:
        return JSONResponse(self.config.public_view())

    async def set_config(self, request: Request) -> Response:
        try:
            changes = json_object(await request.body())
            self.reconfigure(changes)
        except BadRequest as exc:
            return _bad_request(exc)
        except ConfigError as exc:
            return _error(400, "invalid_request_error", "parameter_invalid", exc.message, exc.param)
        log.info("configuration changed: %s", ", ".join(sorted(changes)))
        return JSONResponse(self.config.public_view())

    async def list_authorizations(self, request: Request) -> Response:
        records = self.store.list_authorizations(request.query_params.get("payment"))
        data = [_admin_view(r) for r in records]
        return JSONResponse({"object": "list", "data": data, "has_more": False})

    async def list_operations(self, request: Request) -> Response:
        records = self.store.list_operations(request.query_params.get("authorization"))
        data = [_admin_view(r) for r in records]
        return JSONResponse({"object": "list", "data": data, "has_more": False})

    async def get_stats(self, request: Request) -> Response:
        stats = dataclasses.asdict(self.stats)
        stats["notifications"] = dataclasses.asdict(self.notifier.stats)
        return JSONResponse(stats)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


def _card_key(card: CardInput) -> str:
    """The succeeds-once card's key in the store: a hash of the card as typed (number, expiry, holder name)."""
    typed = f"{card.number}|{card.exp_month}|{card.exp_year}|{card.holder_name or ''}"
    return hashlib.sha256(typed.encode()).hexdigest()


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 16):
        raise BadRequest(f"{name}: a whole number is expected.", name)
    return int(value)


async def _decision(request: Request) -> str | None:
    """The shopper's choice from a page's form: approve, decline, or None for anything else."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    choice = (form.get("decision") or [""])[0]
    return choice if choice in ("approve", "decline") else None


def _admin_view(record: AuthorizationRecord | OperationRecord) -> dict[str, Any]:
    view = dataclasses.asdict(record)
    del view["request_hash"]
    return view


def _operation_rule(inp: OperationInput, auth: AuthorizationRecord) -> OperationDecision:
    """What a capture, cancel or refund does to an authorization; a refusal is recorded as failed."""

    def failed(code: str, message: str, amount: int | None = None) -> OperationDecision:
        return OperationDecision("failed", amount or inp.amount or auth.amount, code, message)

    if inp.kind == "capture":
        if auth.status != cards.APPROVED:
            return failed("authorization_not_approved", "Only an approved authorization can be captured.")
        if auth.captured:
            return failed("already_captured", "The authorization was already captured.")
        amount = inp.amount or auth.amount
        if amount > auth.amount:
            return failed("amount_too_large", "The capture exceeds the authorized amount.")
        return OperationDecision("succeeded", amount, changes={"captured": True, "amount_captured": amount})
    if inp.kind == "cancel":
        if auth.status == cards.ACTION_REQUIRED or (auth.status == cards.APPROVED and not auth.captured):
            return OperationDecision("succeeded", auth.amount, changes={"status": cards.CANCELED})
        if auth.captured:
            return failed("already_captured", "A captured authorization cannot be canceled; refund it.")
        if auth.status == cards.CANCELED:
            return failed("already_canceled", "The authorization was already canceled.")
        return failed("authorization_not_approved", "A declined authorization cannot be canceled.")
    # refund
    remaining = auth.amount_captured - auth.amount_refunded
    if not auth.captured:
        return failed("not_captured", "Only a captured authorization can be refunded.")
    if remaining <= 0:
        return failed("already_refunded", "The authorization was already refunded in full.")
    amount = inp.amount or remaining
    if amount > remaining:
        return failed("amount_too_large", "The refund exceeds what is left to refund.")
    return OperationDecision("succeeded", amount, changes={"amount_refunded": auth.amount_refunded + amount})


def create_app(config: SimulatorConfig, *, notify_client: httpx.AsyncClient | None = None) -> Starlette:
    """The simulator ASGI app. `notify_client` lets tests receive notifications in process."""
    sim = Simulator(config, notify_client)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sim.aclose()

    routes = [
        Route("/v1/authorizations", sim.create_authorization, methods=["POST"]),
        Route("/v1/authorizations/{reference}", sim.get_authorization, methods=["GET"]),
        Route("/v1/authorizations/{reference}/capture", sim.capture, methods=["POST"]),
        Route("/v1/authorizations/{reference}/cancel", sim.cancel, methods=["POST"]),
        Route("/v1/refunds", sim.refund, methods=["POST"]),
        Route("/v1/operations/{reference}", sim.get_operation, methods=["GET"]),
        Route("/v1/records", sim.list_records, methods=["GET"]),
        Route("/3ds/{sim_id}", sim.challenge_page, methods=["GET"]),
        Route("/3ds/{sim_id}", sim.challenge_decision, methods=["POST"]),
        Route("/apm/{sim_id}", sim.apm_page, methods=["GET"]),
        Route("/apm/{sim_id}", sim.apm_decision, methods=["POST"]),
        Route("/_sim/config", sim.get_config, methods=["GET"]),
        Route("/_sim/config", sim.set_config, methods=["POST"]),
        Route("/_sim/authorizations", sim.list_authorizations, methods=["GET"]),
        Route("/_sim/operations", sim.list_operations, methods=["GET"]),
        Route("/_sim/stats", sim.get_stats, methods=["GET"]),
        Route("/healthz", sim.healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.simulator = sim
    return app
