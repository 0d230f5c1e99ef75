"""What the dashboard's merchant pages read and do.

Reads: the payment search, a payment with its timeline (attempts, status changes, events, webhook
deliveries, refunds, payables), the balance's history for its chart, payables by due date, a settlement's
payables, the API keys' hints; everything else the pages show comes from the services the API uses. Every
function takes the merchant whose data it may see (the session's, or the operator's pick) and finds nothing
of another merchant's: another merchant's id is NotFound, as on the API.

Actions (capture, cancel, refund, resend an event, rotate a webhook secret, roll API keys) run the API's own
services under the API's idempotency (`services/idempotency.run`, with the same path and body as the API's
request), keyed by an Idempotency-Key the page generated into its form: a form submitted twice does the
work once and shows the first answer again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from tender.domain.ids import BALANCE_TRANSACTION, MAX_ID_LENGTH, floor_id
from tender.domain.models import Payment
from tender.domain.money import MAX_AMOUNT, currency_exponent, format_amount
from tender.domain.money_models import Settlement
from tender.domain.payments import PaymentStatus
from tender.domain.recurring import Customer, Invoice, SavedPaymentMethod, Subscription
from tender.errors import InvalidRequest, NotFound
from tender.services import customers as customer_service
from tender.services import events as event_service
from tender.services import idempotency, merchants, payments, refunds
from tender.services import payment_methods as payment_method_service
from tender.services import subscriptions as subscription_service
from tender.services import webhook_endpoints as endpoint_service
from tender.services.objects import (
    delivery_object,
    dumps,
    endpoint_object,
    iso,
    list_object,
    payment_object,
    refund_object,
)
from tender.services.payment_requests import CaptureIn
from tender.services.refunds import RefundCreate
from tender.store import dashboard_queries as queries
from tender.store import settlements as settlement_store
from tender.store.dashboard_queries import (
    AccountNow,
    DeliveryRow,
    DueDay,
    KeyHint,
    PayableRow,
    PaymentHistory,
    PaymentSearch,
)
from tender.store.db import Conn, Database, Page
from tender.vault import Vault

__all__ = [
    "AccountNow",
    "DeliveryRow",
    "DueDay",
    "KeyHint",
    "PayableRow",
    "PaymentHistory",
    "PaymentSearch",
]

PAGE_SIZE = 25
MAX_SEARCH_LENGTH = 255
CHART_WINDOWS = (30, 90)  # days the balance chart may show
DUE_DAYS_SHOWN = 60

# -- payments --------------------------------------------------------------------------------------------


def _date(value: str | None, param: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{param}: must be a date as YYYY-MM-DD", param=param) from None


def parse_search(
    text: str | None, status: str | None, created_from: str | None, created_to: str | None, tz: tzinfo
) -> PaymentSearch:
    """The search form's fields, checked (a 400 naming the field): dates are business days in `tz`, both
    inclusive."""
    text = (text or "").strip() or None
    if text is not None and (len(text) > MAX_SEARCH_LENGTH or "\x00" in text):
        raise InvalidRequest(f"q: at most {MAX_SEARCH_LENGTH} characters, none of them NUL", param="q")
    status = status or None
    if status is not None and status not in PaymentStatus.__members__.values():
        raise InvalidRequest("status: must be one of " + ", ".join(s.value for s in PaymentStatus), param="status")
    first, last = _date(created_from, "from"), _date(created_to, "to")
    if first is not None and last is not None and last < first:
        raise InvalidRequest("to: must not be before from", param="to")
    return PaymentSearch(
        text=text,
        status=status,
        created_from=datetime.combine(first, time(), tz) if first else None,
        created_before=datetime.combine(last + timedelta(days=1), time(), tz) if last else None,
    )


def _cursor(value: str | None) -> str | None:
    if value is not None and (len(value) > MAX_ID_LENGTH or "\x00" in value):
        raise InvalidRequest("starting_after: not an id", param="starting_after")
    return value or None


async def search_payments(
    db: Database, merchant_id: str, search: PaymentSearch, *, starting_after: str | None, limit: int = PAGE_SIZE
) -> Page[Payment]:
    async with db.connection() as conn:
        return await queries.search_payments(
            conn, merchant_id, search, limit=limit, starting_after=_cursor(starting_after)
        )


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One line of a payment's timeline, oldest first."""

    at: datetime
    kind: str  # created | attempt | event | delivery | refund | payable
    title: str
    detail: str = ""
    status: str | None = None
    object_id: str | None = None  # an event's id (resend), a refund's, a payable's


@dataclass(frozen=True, slots=True)
class PaymentView:
    payment: Payment
    history: PaymentHistory
    timeline: list[TimelineItem]

    @property
    def refundable(self) -> int:
        return self.payment.amount_captured - self.payment.amount_refunded


def _attempt_title(a: queries.AttemptRow) -> str:
    verb = {"authorize": "Authorization", "capture": "Capture", "cancel": "Cancel"}.get(a.operation, a.operation)
    return f"{verb} at {a.processor}"


def _attempt_detail(a: queries.AttemptRow, currency: str) -> str:
    parts = [a.status.replace("_", " ")]
    if a.amount is not None:
        parts.append(format_amount(a.amount, currency))
    if a.decline_code or a.failure_code:
        parts.append(a.decline_code or a.failure_code or "")
    parts.append(f"{a.calls} call" + ("" if a.calls == 1 else "s"))
    return ", ".join(parts)


def _delivery_detail(d: DeliveryRow) -> str:
    parts = [d.status, f"{d.attempts} attempt" + ("" if d.attempts == 1 else "s")]
    if d.last_status_code is not None:
        parts.append(f"HTTP {d.last_status_code}")
    elif d.last_error:
        parts.append("no answer")
    return ", ".join(parts)


def build_timeline(payment: Payment, history: PaymentHistory) -> list[TimelineItem]:
    """Every attempt, status change (as its event), event, webhook delivery, refund and payable, by time."""
    currency = payment.currency
    items = [TimelineItem(payment.created, "created", "Payment created", format_amount(payment.amount, currency))]
    for a in history.attempts:
        items.append(TimelineItem(a.created, "attempt", _attempt_title(a), _attempt_detail(a, currency), a.status))
    events = {e.id: e for e in history.events}
    for e in history.events:
        detail = f"status {e.status}" if e.status else ""
        items.append(TimelineItem(e.created, "event", e.type, detail, e.status, e.id))
    for d in history.deliveries:
        event = events.get(d.event_id)
        title = f"Webhook {event.type if event else d.event_id} to {d.endpoint_url}"
        items.append(TimelineItem(d.last_attempt_at or d.created, "delivery", title, _delivery_detail(d), d.status))
    for r in history.refunds:
        detail = format_amount(r.amount, r.currency) + (f", {r.failure_code}" if r.failure_code else "")
        items.append(TimelineItem(r.created, "refund", f"Refund {r.id}", detail, r.status, r.id))
    for p in history.payables:
        title = "Payable" if p.type == "payment" else "Payable for a refund"
        detail = f"net {format_amount(p.net, p.currency)} on {p.payment_date.isoformat()}"
        items.append(TimelineItem(p.created, "payable", title, detail, p.status, p.id))
    order = {"created": 0, "attempt": 1, "refund": 2, "payable": 3, "event": 4, "delivery": 5}
    return sorted(items, key=lambda i: (i.at, order[i.kind]))


async def payment_view(db: Database, merchant_id: str, payment_id: str) -> PaymentView:
    async with db.snapshot() as conn:
        # One snapshot: the payment and its history as of one moment.
        payment = await _payment(conn, merchant_id, payment_id)
        history = await queries.payment_history(conn, merchant_id, payment_id)
    return PaymentView(payment, history, build_timeline(payment, history))


async def _payment(conn: Conn, merchant_id: str, payment_id: str) -> Payment:
    found = None
    if payment_id.startswith("pay_") and len(payment_id) <= MAX_ID_LENGTH:
        found = await queries.search_payments(
            conn, merchant_id, PaymentSearch(text=payment_id), limit=1, starting_after=None
        )
    if found is None or not found.rows:
        raise NotFound("No such payment.", param="id")
    return found.rows[0]


# -- money -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalancePoint:
    day: date
    pending: int
    available: int


@dataclass(frozen=True, slots=True)
class BalanceHistory:
    """Per currency: the balances now and at the end of each of the window's days (oldest first)."""

    days: int
    now: dict[str, tuple[int, int]]  # currency -> (pending, available)
    series: dict[str, list[BalancePoint]] = field(default_factory=dict)


def history_series(
    now: list[AccountNow], movements: list[queries.BalanceMovement], first_day: date, last_day: date
) -> dict[str, list[BalancePoint]]:
    """End-of-day balances, walked back from today's: a day's close is the next day's close minus the next
    day's movements. Pure, so it is checked apart from the database."""
    current: dict[str, dict[str, int]] = {}
    for a in now:
        current.setdefault(a.currency, {"merchant_pending": 0, "merchant_available": 0})[a.kind] = a.amount
    moved: dict[tuple[str, date], dict[str, int]] = {}
    for m in movements:
        current.setdefault(m.currency, {"merchant_pending": 0, "merchant_available": 0})
        moved.setdefault((m.currency, m.day), {}).setdefault(m.kind, 0)
        moved[(m.currency, m.day)][m.kind] += m.delta
    series: dict[str, list[BalancePoint]] = {}
    for currency, balances in sorted(current.items()):
        pending, available = balances["merchant_pending"], balances["merchant_available"]
        # Movements after the last day shown (none, normally: the last day is today) are undone first.
        for (cur, day), kinds in moved.items():
            if cur == currency and day > last_day:
                pending -= kinds.get("merchant_pending", 0)
                available -= kinds.get("merchant_available", 0)
        points: list[BalancePoint] = []
        day = last_day
        while day >= first_day:
            points.append(BalancePoint(day, pending, available))
            kinds = moved.get((currency, day), {})
            pending -= kinds.get("merchant_pending", 0)
            available -= kinds.get("merchant_available", 0)
            day -= timedelta(days=1)
        series[currency] = points[::-1]
    return series


# Days that ended this long ago are closed: no entry can still be committed with a time in them (an entry's
# `created` is its transaction's start, and no money-moving transaction lasts this long).
CLOSED_AFTER = timedelta(minutes=15)
_MAX_CACHED = 1024
# The ledger is append-only and entries carry their creation time, so a closed day's movements never change:
# they are read once per merchant, window and day (per process), and only the open days' entries after that.
_closed_days: dict[tuple[str, str, datetime, datetime], list[queries.BalanceMovement]] = {}


def _entry_floor(moment: datetime) -> str:
    return floor_id(BALANCE_TRANSACTION, moment)


async def _movements(
    conn: Conn, merchant_id: str, tz: tzinfo, since: datetime, until: datetime | None
) -> list[queries.BalanceMovement]:
    # Ids bound the entries' index scan, a little wider than the times (ids and `created` differ by the
    # transaction's age); the times decide.
    return await queries.balance_movements(
        conn,
        merchant_id,
        since=since,
        until=until,
        since_id=_entry_floor(since - CLOSED_AFTER),
        until_id=_entry_floor(until + CLOSED_AFTER) if until is not None else None,
        time_zone=str(tz),
    )


async def balance_history(
    db: Database, merchant_id: str, *, days: int, tz: tzinfo, today: date, now: datetime | None = None
) -> BalanceHistory:
    """End-of-day pending and available per currency over `days` days up to `today`."""
    if days not in CHART_WINDOWS:
        raise InvalidRequest("days: must be one of " + ", ".join(map(str, CHART_WINDOWS)), param="days")
    first_day = today - timedelta(days=days - 1)
    since = datetime.combine(first_day + timedelta(days=1), time(), tz)  # the first day's close is walked back to
    moment = now or datetime.now(tz)
    closed_until = datetime.combine((moment - CLOSED_AFTER).astimezone(tz).date(), time(), tz)
    async with db.snapshot() as conn:
        balances = await queries.balance_now(conn, merchant_id)
        movements: list[queries.BalanceMovement] = []
        if closed_until > since:
            key = (merchant_id, str(tz), since, closed_until)
            closed = _closed_days.get(key)
            if closed is None:
                closed = await _movements(conn, merchant_id, tz, since, closed_until)
                if len(_closed_days) >= _MAX_CACHED:
                    _closed_days.clear()
                _closed_days[key] = closed
            movements += closed
        movements += await _movements(conn, merchant_id, tz, max(since, closed_until), None)
    totals: dict[str, tuple[int, int]] = {}
    for a in balances:
        pending, available = totals.get(a.currency, (0, 0))
        totals[a.currency] = (a.amount, available) if a.kind == "merchant_pending" else (pending, a.amount)
    return BalanceHistory(days, totals, history_series(balances, movements, first_day, today))


async def payables_by_due_date(db: Database, merchant_id: str) -> list[DueDay]:
    async with db.connection() as conn:
        return await queries.payables_by_due_date(conn, merchant_id, limit=DUE_DAYS_SHOWN)


@dataclass(frozen=True, slots=True)
class SettlementView:
    settlement: Settlement
    payables: list[PayableRow]


async def settlement_view(db: Database, merchant_id: str, settlement_id: str) -> SettlementView:
    async with db.connection() as conn:
        settlement = await settlement_store.get(conn, merchant_id, settlement_id)
        if settlement is None:
            raise NotFound("No such settlement.", param="id")
        rows = await queries.settlement_payables(conn, merchant_id, settlement_id, limit=500)
    return SettlementView(settlement, rows)


async def api_key_hints(db: Database, merchant_id: str) -> list[KeyHint]:
    async with db.connection() as conn:
        return await queries.api_key_hints(conn, merchant_id)


# -- actions -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action answered, as the API would have: its status code and body, and whether this was a
    replay of an earlier submission of the same form."""

    status_code: int
    body: dict[str, Any]
    replayed: bool


def parse_amount(text: str | None, currency: str, *, param: str = "amount") -> int | None:
    """A form's amount in the currency's major unit ("12.50") as minor units (1250); empty: None (all).
    Never through a float."""
    text = (text or "").strip()
    if not text:
        return None
    exponent = currency_exponent(currency)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidRequest(f"{param}: must be a number such as 12.50", param=param) from None
    if not value.is_finite():  # NaN, sNaN (whose arithmetic raises), Infinity
        raise InvalidRequest(f"{param}: must be a number such as 12.50", param=param)
    if value.adjusted() > 30:  # far past any amount, and before scaleb could overflow the context
        raise InvalidRequest(f"{param}: too large", param=param)
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise InvalidRequest(f"{param}: at most {exponent} decimal places in this currency", param=param)
    if minor <= 0:
        raise InvalidRequest(f"{param}: must be greater than 0", param=param)
    if minor > MAX_AMOUNT:
        raise InvalidRequest(f"{param}: too large", param=param)
    return int(minor)


async def _act(
    db: Database,
    vault: Vault,
    merchant_id: str,
    key: str,
    path: str,
    payload: dict[str, Any],
    change: Callable[[Conn], Awaitable[dict[str, Any]]],
    *,
    status_code: int,
    sealed: bool = False,
) -> ActionResult:
    async def work(conn: Conn) -> idempotency.StoredResponse:
        return idempotency.StoredResponse(status_code, dumps(await change(conn)))

    stored = await idempotency.run(
        db,
        merchant_id=merchant_id,
        key=key,
        fingerprint=idempotency.request_fingerprint(vault, merchant_id, "POST", path, payload),
        work=work,
        seal=vault if sealed else None,
    )
    return ActionResult(stored.status_code, orjson.loads(stored.body), stored.replayed)


async def capture(
    db: Database, vault: Vault, merchant_id: str, payment_id: str, amount: int | None, *, key: str
) -> ActionResult:
    payload: dict[str, Any] = {} if amount is None else {"amount": amount}

    async def change(conn: Conn) -> dict[str, Any]:
        return payment_object(await payments.request_capture(conn, merchant_id, payment_id, CaptureIn(amount=amount)))

    path = f"/v1/payments/{payment_id}/capture"
    return await _act(db, vault, merchant_id, key, path, payload, change, status_code=202)


async def cancel(db: Database, vault: Vault, merchant_id: str, payment_id: str, *, key: str) -> ActionResult:
    async def change(conn: Conn) -> dict[str, Any]:
        return payment_object(await payments.request_cancel(conn, merchant_id, payment_id))

    path = f"/v1/payments/{payment_id}/cancel"
    return await _act(db, vault, merchant_id, key, path, {}, change, status_code=202)


async def refund(
    db: Database, vault: Vault, merchant_id: str, payment_id: str, amount: int | None, *, key: str
) -> ActionResult:
    payload: dict[str, Any] = {"payment": payment_id, **({} if amount is None else {"amount": amount})}
    request = RefundCreate(payment=payment_id, amount=amount)

    async def change(conn: Conn) -> dict[str, Any]:
        return refund_object(await refunds.create_refund(conn, merchant_id, request))

    return await _act(db, vault, merchant_id, key, "/v1/refunds", payload, change, status_code=202)


async def resend_event(
    db: Database, vault: Vault, merchant_id: str, event_id: str, endpoint_id: str | None, *, key: str
) -> ActionResult:
    request = event_service.Redeliver(endpoint=endpoint_id)
    payload: dict[str, Any] = {} if endpoint_id is None else {"endpoint": endpoint_id}
    path = f"/v1/events/{event_id}/redeliver"

    async def change(conn: Conn) -> dict[str, Any]:
        deliveries = await event_service.redeliver(conn, merchant_id, event_id, request)
        return list_object([delivery_object(d) for d in deliveries], has_more=False, url=path)

    return await _act(db, vault, merchant_id, key, path, payload, change, status_code=202)


async def rotate_secret(db: Database, vault: Vault, merchant_id: str, endpoint_id: str, *, key: str) -> ActionResult:
    """The endpoint with its new secret, shown once (a replay of the same form shows it again, as the API's)."""

    async def change(conn: Conn) -> dict[str, Any]:
        endpoint, secret = await endpoint_service.rotate_secret(conn, vault, merchant_id, endpoint_id)
        return endpoint_object(endpoint, secret=secret)

    path = f"/v1/webhook_endpoints/{endpoint_id}/rotate_secret"
    return await _act(db, vault, merchant_id, key, path, {}, change, status_code=200, sealed=True)


async def roll_keys(db: Database, vault: Vault, merchant_id: str, *, key: str) -> ActionResult:
    """New secret and publishable keys, shown once; the old ones stop working at once (expire_old_in 0).
    The caller makes its process forget cached keys (`Authenticator.forget`), as the API's route does."""

    async def change(conn: Conn) -> dict[str, Any]:
        rolled = await merchants.roll_keys_in(conn, merchant_id, 0)
        return {
            "id": merchant_id,
            "object": "merchant",
            "secret_key": rolled.secret_key,
            "publishable_key": rolled.publishable_key,
            "old_keys_expire_at": iso(rolled.old_keys_expire_at),
        }

    path = f"/admin/v1/merchants/{merchant_id}/roll_keys"
    return await _act(db, vault, merchant_id, key, path, {}, change, status_code=200, sealed=True)


# -- customers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerView:
    customer: Customer
    payment_methods: list[SavedPaymentMethod]
    subscriptions: list[Subscription]
    invoices: list[Invoice]
    payments: list[Payment]


async def customer_view(db: Database, merchant_id: str, customer_id: str) -> CustomerView:
    """A customer with its saved cards, subscriptions, latest invoices and payments (NotFound: not the
    merchant's, or deleted)."""
    if len(customer_id) > MAX_ID_LENGTH:
        raise NotFound("No such customer.", param="id")
    customer = await customer_service.retrieve(db, merchant_id, customer_id)
    methods = await payment_method_service.list_for_customer(
        db, merchant_id, customer_id, limit=100, starting_after=None
    )
    subs = await subscription_service.list_(
        db, merchant_id, limit=100, starting_after=None, customer=customer_id, status=None
    )
    invoices = await subscription_service.list_invoices(
        db, merchant_id, limit=PAGE_SIZE, starting_after=None, subscription=None, customer=customer_id, status=None
    )
    paid = await search_payments(db, merchant_id, PaymentSearch(text=customer_id), starting_after=None)
    return CustomerView(customer, methods.rows, subs.rows, invoices.rows, paid.rows)
