"""What the dashboard's operator pages read and do (operators only: the pages check the viewer).

Reads: the merchants (with whether each has its own fee plan and routing), one merchant with its fee plan
and routing rules, dead letters, processors' health and the operator events, the ledger check, the
reconciliation runs; each through the service the admin API uses where one exists.

Actions run the admin API's own services. Those the API runs under an Idempotency-Key (create a merchant,
pause and resume a processor) run here under the same idempotency, keyed by a key the page generated into its
form, in the operator's scope, with the API's path and body: a form submitted twice does the work once and
shows the first answer again. A dead letter's retry is kept under a key too (the API's retry takes none, and
retrying twice is harmless but noisy). Fee plans and routing rules are set whole, like the API's PUTs: saving
the same rules twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import orjson

from tender.domain import routing as routing_rules
from tender.domain.circuit import CircuitPolicy
from tender.domain.ids import MAX_ID_LENGTH
from tender.domain.models import DeadLetter, DeadLetterStatus, Merchant
from tender.domain.money_models import LedgerVerification, MerchantFeePlan
from tender.domain.operator_events import OperatorEvent
from tender.domain.reconciliation import RunTrigger
from tender.errors import InvalidJson, InvalidRequest, NotFound
from tender.processors.base import Processor
from tender.services import dead_letters, fee_plans, idempotency, ledger, merchants, reconciliation, routing
from tender.services import processor_health as health
from tender.services.fee_plans import FeePlanIn
from tender.services.objects import dumps, merchant_object
from tender.services.processor_health import ProcessorStatus
from tender.services.validation import check_json, parse
from tender.store import dashboard_operator_queries as queries
from tender.store import dead_letters as dead_letter_store
from tender.store import merchants as merchant_store
from tender.store.dashboard_operator_queries import MerchantRow
from tender.store.db import Conn, Database, Page
from tender.vault import Vault

__all__ = ["MerchantRow", "ProcessorStatus"]

PAGE_SIZE = 25
EVENTS_SHOWN = 20
MAX_RULES_TEXT = 60_000  # a fee plan's or routing's JSON as typed in the form: 50 rules fit with room
SCOPE = merchants.OPERATOR_SCOPE
MAX_NAME_LENGTH = merchants.MAX_NAME_LENGTH
MAX_REASON_LENGTH = health.MAX_REASON_LENGTH
DEAD_LETTER_STATUSES = tuple(s.value for s in dead_letters.STATUSES)


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action answered, as the admin API would have: status code and body, and whether this was a
    replay of an earlier submission of the same form."""

    status_code: int
    body: dict[str, Any]
    replayed: bool


async def _act(
    db: Database, vault: Vault, key: str, path: str, payload: Any,
    change: Callable[[Conn], Awaitable[dict[str, Any]]], *, status_code: int = 200, sealed: bool = False,
) -> ActionResult:  # fmt: skip
    if not key:
        raise InvalidRequest("Idempotency-Key: the form lacks one; reload it", param="Idempotency-Key")

    async def work(conn: Conn) -> idempotency.StoredResponse:
        return idempotency.StoredResponse(status_code, dumps(await change(conn)))

    stored = await idempotency.run(
        db, merchant_id=SCOPE, key=key, work=work, seal=vault if sealed else None,
        fingerprint=idempotency.request_fingerprint(vault, SCOPE, "POST", path, payload),
    )  # fmt: skip
    return ActionResult(stored.status_code, orjson.loads(stored.body), stored.replayed)


def _cursor(value: str | None) -> str | None:
    if value is not None and (len(value) > MAX_ID_LENGTH or "\x00" in value):
        raise InvalidRequest("starting_after: not an id", param="starting_after")
    return value or None


def _known_id(value: str, what: str) -> None:
    if len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise NotFound(f"No such {what}.", param="id")


# -- merchants ---------------------------------------------------------------------------------------------


async def list_merchants(db: Database, *, starting_after: str | None) -> Page[MerchantRow]:
    async with db.connection() as conn:
        return await queries.merchants(conn, limit=PAGE_SIZE, starting_after=_cursor(starting_after))


async def create_merchant(db: Database, vault: Vault, name: str, *, key: str) -> ActionResult:
    """POST /admin/v1/merchants: the answer shows the keys once (and again on a replay: kept sealed)."""
    payload = {"name": name}

    async def change(conn: Conn) -> dict[str, Any]:
        created = await merchants.create_merchant_in(conn, name)
        return {**merchant_object(created.merchant), "secret_key": created.secret_key,
                "publishable_key": created.publishable_key}  # fmt: skip

    return await _act(db, vault, key, "/admin/v1/merchants", payload, change, status_code=201, sealed=True)


@dataclass(frozen=True, slots=True)
class MerchantView:
    merchant: Merchant
    fee_plan: MerchantFeePlan
    routing: dict[str, Any]  # the admin API's routing object (rules, default, updated)


async def merchant_view(db: Database, merchant_id: str, *, default_processor: str) -> MerchantView:
    _known_id(merchant_id, "merchant")
    async with db.connection() as conn:
        found = await merchant_store.get_merchant(conn, merchant_id)
    if found is None:
        raise NotFound("No such merchant.", param="id")
    plan = await fee_plans.get_plan(db, merchant_id)
    rules = await routing.get(db, merchant_id, default=[default_processor])
    return MerchantView(found, plan, rules)


def _json_text(text: str, *, exact: bool) -> Any:
    """The JSON typed in a form's `rules` box: the admin API's request body, checked as the API checks one."""
    if len(text) > MAX_RULES_TEXT:
        raise InvalidRequest(f"rules: at most {MAX_RULES_TEXT} characters", param="rules")
    try:
        payload = fee_plans.loads_exact(text.encode()) if exact else json.loads(text)
    except (InvalidJson, ValueError, RecursionError):
        raise InvalidRequest("rules: not valid JSON", param="rules") from None
    if not isinstance(payload, dict):
        raise InvalidRequest('rules: must be a JSON object such as {"rules": [...]}', param="rules")
    check_json(payload)
    return payload


def parse_fee_plan(text: str) -> FeePlanIn:
    """The fee plan form's JSON (`{"rules": [...]}`, as PUT /admin/v1/merchants/{id}/fee_plan takes it), with
    exact percents; InvalidRequest naming the field as the API does (`rules[0].percent`)."""
    payload = _json_text(text, exact=True)
    try:
        return parse(FeePlanIn, payload)
    except InvalidRequest as exc:
        if exc.param == "body":  # plan-wide checks (a catch-all rule, no duplicates), as the API names them
            raise InvalidRequest(f"rules: {exc.message.split(': ', 1)[-1]}", param="rules") from None
        raise


async def set_fee_plan(db: Database, merchant_id: str, text: str) -> MerchantFeePlan:
    _known_id(merchant_id, "merchant")
    return await fee_plans.set_plan(db, merchant_id, parse_fee_plan(text))


def parse_routing(text: str, *, on: Collection[str]) -> routing_rules.RoutingRules:
    """The routing form's JSON (`{"rules": [...]}`, as PUT /admin/v1/merchants/{id}/routing takes it), checked
    as services/routing.put checks it, writing nothing."""
    payload = _json_text(text, exact=False)
    parse(routing.RoutingIn, payload)
    rules = routing_rules.parse_rules(payload["rules"])
    routing.check_processors(rules, on)
    return rules


async def set_routing(
    db: Database, merchant_id: str, text: str, *, on: Collection[str], default: Sequence[str]
) -> dict[str, Any]:
    _known_id(merchant_id, "merchant")
    parse_routing(text, on=on)  # the same checks put makes; first, so the error names the `rules` box's field
    return await routing.put(db, merchant_id, json.loads(text), on=on, default=default)


# -- dead letters ------------------------------------------------------------------------------------------


def parse_status(value: str | None) -> DeadLetterStatus | None:
    if not value:
        return None
    try:
        return DeadLetterStatus(value)
    except ValueError:
        raise InvalidRequest("status: must be one of " + ", ".join(dead_letters.STATUSES), param="status") from None


async def list_dead_letters(
    db: Database, *, status: DeadLetterStatus | None, starting_after: str | None
) -> Page[DeadLetter]:
    async with db.connection() as conn:
        return await dead_letter_store.list_(
            conn, status=status, limit=PAGE_SIZE, starting_after=_cursor(starting_after)
        )


async def dead_letter(db: Database, dead_letter_id: str) -> DeadLetter:
    _known_id(dead_letter_id, "dead letter")
    async with db.connection() as conn:
        found = await dead_letter_store.get(conn, dead_letter_id)
    if found is None:
        raise NotFound("No such dead letter.", param="id")
    return found


async def retry_dead_letter(db: Database, vault: Vault, dead_letter_id: str, *, key: str) -> ActionResult:
    """services/dead_letters.retry (its own transaction, as the API runs it), once per form key."""
    _known_id(dead_letter_id, "dead letter")

    async def change(conn: Conn) -> dict[str, Any]:
        return await dead_letters.retry(db, dead_letter_id)

    return await _act(db, vault, key, f"/admin/v1/dead_letters/{dead_letter_id}/retry", {}, change)


# -- processors ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessorsView:
    processors: list[ProcessorStatus]
    events: list[OperatorEvent]  # newest first


async def processors_view(db: Database, policy: CircuitPolicy, processors_on: Sequence[str]) -> ProcessorsView:
    found = await health.statuses(db, policy, processors_on)
    events = await health.list_events(db, type=None, limit=EVENTS_SHOWN, starting_after=None)
    return ProcessorsView(found, events.rows)


async def set_paused(
    db: Database, vault: Vault, policy: CircuitPolicy, processors_on: Collection[str], name: str, *, paused: bool,
    reason: str | None, key: str,
) -> ActionResult:  # fmt: skip
    """POST /admin/v1/processors/{name}/pause|resume, with the API's body and checks."""
    payload: dict[str, Any] = {"reason": reason} if paused and reason else {}
    body = parse(health.PauseRequest, payload) if paused else parse(health.ResumeRequest, payload)
    if len(name) > routing_rules.MAX_NAME_LENGTH:
        raise NotFound("No such processor: it is unknown or not configured on this Tender", param="name")
    health.check_on(processors_on, name)
    why = body.reason if isinstance(body, health.PauseRequest) else None

    async def change(conn: Conn) -> dict[str, Any]:
        return health.processor_object(await health.set_paused_in(conn, policy, name, paused=paused, reason=why))

    path = f"/admin/v1/processors/{name}/{'pause' if paused else 'resume'}"
    return await _act(db, vault, key, path, payload, change)


# -- ledger and reconciliation ---------------------------------------------------------------------------


async def verify_ledger(db: Database) -> LedgerVerification:
    return await ledger.verify(db)


async def list_reconciliations(
    db: Database, *, processor: str | None, starting_after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    if processor is not None and len(processor) > routing_rules.MAX_NAME_LENGTH:
        raise InvalidRequest("processor: not a processor's name", param="processor")
    return await reconciliation.list_runs(
        db, processor=processor or None, limit=PAGE_SIZE, starting_after=_cursor(starting_after)
    )


async def run_reconciliation(
    db: Database, vault: Vault, processors_on: Mapping[str, Processor], processor: str, day_text: str, tz: tzinfo,
    *, key: str,
) -> ActionResult:  # fmt: skip
    """Reconcile one processor's day now, as `tender reconcile` does (stored with the trigger `dashboard`), once
    per form key: a run reads the processor's records, which may take a while. The answer holds
    the run's id (its figures are on its page, failed or not)."""
    if processor not in processors_on:
        raise InvalidRequest("processor: not a processor that is on here", param="processor")
    day = reconciliation.parse_day(day_text.strip(), tz)
    payload = {"processor": processor, "date": day.isoformat()}

    async def change(conn: Conn) -> dict[str, Any]:
        done = await reconciliation.run(db, processors_on[processor], day, tz, trigger=RunTrigger.DASHBOARD)
        return {"id": done.run_id, "error": done.error}

    return await _act(db, vault, key, "/dashboard/operator/reconciliations/run", payload, change, status_code=201)


async def reconciliation_run(db: Database, run_id: str) -> dict[str, Any]:
    _known_id(run_id, "reconciliation")
    return await reconciliation.get_run(db, run_id)
