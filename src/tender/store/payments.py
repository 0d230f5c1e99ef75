"""SQL for payments, their vault cards and their processor attempts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import orjson
from psycopg import sql
from psycopg.types.json import Jsonb

from tender.domain.models import Attempt, Payment, VaultCard
from tender.domain.transitions import PaymentChange
from tender.store import notifications
from tender.store.attempts import ATTEMPT_COLUMNS
from tender.store.db import Conn, Page, newest_first

PAYMENT_COLUMNS = [f.name for f in fields(Payment)]
_COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, PAYMENT_COLUMNS)).as_string()
_SELECT = sql.SQL(f"SELECT {_COLUMN_LIST} FROM payments")


def _payment(row: dict[str, Any]) -> Payment:
    return Payment(**{name: row[name] for name in PAYMENT_COLUMNS})


# For a caller that sends this read with another (store/events.py), and makes the rows Payments.
SELECT_BY_IDS = (_SELECT + sql.SQL(" WHERE id = ANY(%s)")).as_string()
payment_of = _payment


@dataclass(frozen=True, slots=True)
class NewCard:
    """A vault_cards row as inserted: the number (and, for a payment, the CVC) encrypted by the vault."""

    id: str
    merchant_id: str
    number_ct: bytes
    cvc_ct: bytes | None  # None: a saved card, which never keeps one
    fingerprint: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    funding: str
    holder_name: str | None


CARD_COLUMNS = ", ".join(f.name for f in fields(NewCard))


async def insert_card(conn: Conn, card: NewCard) -> None:
    await conn.execute(
        f"INSERT INTO vault_cards ({CARD_COLUMNS}) VALUES ({', '.join(['%s'] * len(fields(NewCard)))})",
        tuple(getattr(card, f.name) for f in fields(NewCard)),
    )


_INSERT_COLUMNS = [*PAYMENT_COLUMNS, "next_run_at"]
# Composed once: building it per call cost a noticeable share of the accept path's CPU.
_INSERT = (
    sql.SQL(
        "INSERT INTO payments ({}) VALUES ({})"
        " ON CONFLICT (merchant_id, reference) WHERE reference IS NOT NULL DO NOTHING RETURNING 1"
    )
    .format(
        sql.SQL(", ").join(map(sql.Identifier, _INSERT_COLUMNS)),
        sql.SQL(", ").join(map(sql.Placeholder, _INSERT_COLUMNS)),
    )
    .as_string()
)


async def insert_payment(conn: Conn, p: Payment, *, next_run_at: datetime | None) -> bool:
    """Insert; False (and nothing written) if the merchant already has a payment with this reference."""
    values: dict[str, Any] = {name: getattr(p, name) for name in PAYMENT_COLUMNS}
    values["payment_method"] = Jsonb(p.payment_method)
    values["metadata"] = Jsonb(p.metadata)
    values["next_action"] = Jsonb(p.next_action) if p.next_action is not None else None
    values["next_run_at"] = next_run_at
    cur = await conn.execute(_INSERT, values)
    return await cur.fetchone() is not None


async def get_payment(conn: Conn, merchant_id: str, payment_id: str) -> Payment | None:
    cur = await conn.execute(_SELECT + sql.SQL(" WHERE id = %s AND merchant_id = %s"), (payment_id, merchant_id))
    row = await cur.fetchone()
    return _payment(row) if row else None


async def find_by_reference(conn: Conn, merchant_id: str, reference: str) -> str | None:
    cur = await conn.execute(
        "SELECT id FROM payments WHERE merchant_id = %s AND reference = %s", (merchant_id, reference)
    )
    row = await cur.fetchone()
    return str(row["id"]) if row else None


async def list_payments(
    conn: Conn,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None = None,
    status: str | None = None,
    reference: str | None = None,
) -> Page[Payment]:
    page = await newest_first(
        conn, "payments", _COLUMN_LIST, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "status": status, "reference": reference},
    )  # fmt: skip
    return page.map(_payment)


async def get_payments_by_ids(conn: Conn, ids: Sequence[str]) -> list[Payment]:
    cur = await conn.execute(_SELECT + sql.SQL(" WHERE id = ANY(%s)"), (list(ids),))
    return [_payment(row) for row in await cur.fetchall()]


_CARDS = "SELECT id, number_ct, cvc_ct, exp_month, exp_year, holder_name FROM vault_cards WHERE id = ANY(%s)"


async def get_cards(conn: Conn, card_ids: Sequence[str]) -> dict[str, VaultCard]:
    cur = await conn.execute(_CARDS, (list(card_ids),))
    return {row["id"]: VaultCard(**row) for row in await cur.fetchall()}


@dataclass(frozen=True, slots=True)
class ClaimedState:
    """What the payment pump reads about the payments it just claimed."""

    open_attempts: dict[str, list[Attempt]]  # operations not yet finished, oldest first, by payment
    authorizations: dict[str, Attempt]  # the latest answered authorize attempt (finished or not), of those asked
    cards: dict[str, VaultCard]  # the vault cards asked for, by id


# attempts.open_attempts and attempts.latest_authorizations in one statement, each branch on its own index
# (payment_attempts_open, payment_attempts_payment). One condition with an OR instead made the planner scan.
_ATTEMPTS_OF_CLAIMED = f"""
SELECT {ATTEMPT_COLUMNS}, true AS open FROM payment_attempts WHERE payment_id = ANY(%s) AND finished IS NULL
UNION ALL
(SELECT DISTINCT ON (payment_id) {ATTEMPT_COLUMNS}, false AS open FROM payment_attempts
 WHERE payment_id = ANY(%s) AND operation = 'authorize' AND status IN ('approved', 'action_required')
 ORDER BY payment_id, id DESC)
ORDER BY id
"""


async def claimed_state(
    conn: Conn, payment_ids: Sequence[str], answered_of: Sequence[str], card_ids: Sequence[str]
) -> ClaimedState:
    """The claimed payments' open attempts, the latest answered authorization of those in `answered_of`, and the
    vault cards `card_ids`, in one round trip (two statements in a pipeline)."""
    async with conn.pipeline():
        attempts = await conn.execute(_ATTEMPTS_OF_CLAIMED, (list(payment_ids), list(answered_of)))
        cards = await conn.execute(_CARDS, (list(card_ids),)) if card_ids else None
        attempt_rows = await attempts.fetchall()
        card_rows = await cards.fetchall() if cards is not None else []
    state = ClaimedState({}, {}, {row["id"]: VaultCard(**row) for row in card_rows})
    for row in attempt_rows:
        attempt = Attempt(**{k: v for k, v in row.items() if k != "open"})
        if row["open"]:
            state.open_attempts.setdefault(attempt.payment_id, []).append(attempt)
        else:
            state.authorizations[attempt.payment_id] = attempt
    return state


async def set_payment_method(conn: Conn, payment_id: str, payment_method_id: str) -> None:
    """The saved method a payment's card became (setup_future_usage), in the status change's transaction."""
    await conn.execute("UPDATE payments SET payment_method_id = %s WHERE id = %s", (payment_method_id, payment_id))


async def erase_cvcs(conn: Conn, card_ids: Sequence[str]) -> None:
    if card_ids:
        await conn.execute(
            "UPDATE vault_cards SET cvc_ct = NULL WHERE id = ANY(%s) AND cvc_ct IS NOT NULL", (list(card_ids),)
        )


async def erase_card_numbers(conn: Conn, card_ids: Sequence[str]) -> None:
    """Erase the number (and any CVC) of these one-off cards, their payments final: nothing needs them again.
    A card saved to a customer meanwhile (setup_future_usage, in the same transaction) keeps its number."""
    if card_ids:
        await conn.execute(
            "UPDATE vault_cards c SET number_ct = NULL, cvc_ct = NULL WHERE c.id = ANY(%s) AND c.number_ct IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM payment_methods m WHERE m.card_id = c.id)",
            (list(card_ids),),
        )


async def erase_expired_cvcs(conn: Conn, older_than: timedelta) -> list[str]:
    """Erase the CVC of card payments still processing that were made more than `older_than` ago, and make
    them due for a look-up at once (unless a worker holds them: its own write schedules them). Returns the
    payments. (`next_run_at IS NOT NULL` is true of every processing payment; it lets the small partial
    index of due rows find them instead of a scan of every card.)"""
    cur = await conn.execute(
        "UPDATE vault_cards v SET cvc_ct = NULL FROM payments p"
        " WHERE p.card_id = v.id AND v.cvc_ct IS NOT NULL AND p.next_run_at IS NOT NULL"
        " AND p.status = 'processing' AND p.created < now() - %s RETURNING p.id",
        (older_than,),
    )
    ids = [row["id"] for row in await cur.fetchall()]
    if ids:
        await conn.execute(
            "UPDATE payments SET next_run_at = now() WHERE id = ANY(%s) AND status = 'processing'"
            " AND (lease_token IS NULL OR next_run_at <= now())",
            (ids,),
        )
        await notifications.announce_work(conn, "payments")
    return ids


def _change_params(c: PaymentChange) -> dict[str, Any]:
    return {
        "id": c.id,
        "expected_status": c.expected_status,
        "status": c.status,
        "amount_captured": c.amount_captured,
        "failure_code": c.failure_code,
        "decline_code": c.decline_code,
        "failure_message": c.failure_message,
        "next_action": Jsonb(c.next_action) if c.next_action is not None else None,
        "processor_reference": c.processor_reference,
        "next_run_at": c.next_run_at,
        "last_error": c.last_error,
        "reset_tries": c.reset_tries,
        "updated": c.updated,
        "processor": c.processor,
        "held": c.held,
    }


# The arrays go in binary (%b): psycopg quotes and escapes a text array element by element in Python, 2.1 ms for
# this statement's arrays of a 100-payment batch against 0.9 ms in binary (issue 16). The other batch statements
# of the pump (store/attempts, events, payables, ledger, webhooks) do the same.
# One statement for the whole batch (it was one UPDATE per payment): each change where our lease still holds AND
# the status is still the one we claimed. The right-hand `p.` columns are the row's old values. `p.id = ANY(...)`
# and an unprepared statement (planned for each batch) keep the primary key's index: a prepared statement's generic
# plan, made while the table was small (a fresh database, not analyzed yet), scanned the whole table for ever
# after (pg_stat_user_tables: hundreds of sequential scans of payments and payment_attempts in a 25 s load).
_UPDATE_AFTER_PROCESSING = """
UPDATE payments p SET status = c.status, amount_captured = c.amount_captured,
  failure_code = c.failure_code, decline_code = c.decline_code,
  failure_message = c.failure_message, next_action = c.next_action::jsonb,
  -- A failover hands the payment to another processor; the old one's reference (an unconfirmed
  -- registration at most: nothing was charged) does not describe it any more.
  processor_reference = CASE WHEN c.processor IS NOT NULL AND c.processor <> p.processor
    THEN c.processor_reference ELSE coalesce(c.processor_reference, p.processor_reference) END,
  processor = coalesce(c.processor, p.processor),
  next_run_at = c.next_run_at, last_error = c.last_error,
  tries = CASE WHEN c.reset_tries THEN 0 WHEN c.held THEN greatest(p.tries - 1, 0) ELSE p.tries END,
  lease_token = NULL,
  -- only a visible change moves `updated`
  updated = CASE WHEN p.status IS DISTINCT FROM c.status THEN c.updated ELSE p.updated END
FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::timestamptz[], %b::text[], %b::boolean[], %b::timestamptz[], %b::text[], %b::boolean[])
  AS c (id, expected_status, status, amount_captured, failure_code, decline_code, failure_message, next_action,
        processor_reference, next_run_at, last_error, reset_tries, updated, processor, held)
WHERE p.id = ANY(%s) AND p.id = c.id AND p.lease_token = %s AND p.status = c.expected_status
RETURNING p.id
"""


async def update_after_processing(conn: Conn, token: Any, changes: Sequence[PaymentChange]) -> set[str]:
    """Write the outcome of claimed payments where our lease still holds AND the status is still the one we
    claimed (an inbound notification may have moved it meanwhile: never move a status backwards).
    Returns the ids written. Only services/payment_transitions.py calls it, and writes what follows."""
    if not changes:
        return set()
    cur = await conn.execute(
        _UPDATE_AFTER_PROCESSING,
        (
            [c.id for c in changes],
            [c.expected_status for c in changes],
            [c.status for c in changes],
            [c.amount_captured for c in changes],
            [c.failure_code for c in changes],
            [c.decline_code for c in changes],
            [c.failure_message for c in changes],
            [None if c.next_action is None else orjson.dumps(c.next_action).decode() for c in changes],
            [c.processor_reference for c in changes],
            [c.next_run_at for c in changes],
            [c.last_error for c in changes],
            [c.reset_tries for c in changes],
            [c.updated for c in changes],
            [c.processor for c in changes],
            [c.held for c in changes],
            [c.id for c in changes],
            token,
        ),
        prepare=False,  # planned with this batch's ids: see above
    )
    return {row["id"] for row in await cur.fetchall()}


async def apply_change(conn: Conn, change: PaymentChange) -> bool:
    """Apply one change outside a claim (an inbound notification): guarded by the expected status only, and
    it takes the row from any worker holding it (that worker's later write then finds the status moved).
    Only services/payment_transitions.py calls it, and writes what follows."""
    cur = await conn.execute(
        "UPDATE payments SET status = %(status)s, amount_captured = %(amount_captured)s,"
        " failure_code = %(failure_code)s, decline_code = %(decline_code)s,"
        " failure_message = %(failure_message)s, next_action = %(next_action)s,"
        " processor_reference = coalesce(%(processor_reference)s, processor_reference),"
        " next_run_at = %(next_run_at)s, last_error = NULL, tries = 0, lease_token = NULL, updated = %(updated)s"
        " WHERE id = %(id)s AND status = %(expected_status)s RETURNING id",
        _change_params(change),
    )
    return await cur.fetchone() is not None


async def lock_payment(conn: Conn, payment_id: str, merchant_id: str | None = None) -> Payment | None:
    """The payment, row-locked until the transaction ends (serializes capture/cancel requests)."""
    query = _SELECT + sql.SQL(" WHERE id = %s") + (sql.SQL(" AND merchant_id = %s") if merchant_id else sql.SQL(""))
    params = (payment_id, merchant_id) if merchant_id else (payment_id,)
    cur = await conn.execute(query + sql.SQL(" FOR UPDATE"), params)
    row = await cur.fetchone()
    return _payment(row) if row else None


async def wake_workers(conn: Conn) -> None:
    """Tell idle workers that payments are due now (delivered at commit): an UPDATE fires no trigger."""
    await notifications.announce_work(conn, "payments")


async def schedule_now(conn: Conn, payment_id: str, *, reset_tries: bool = False) -> None:
    """Make a payment due at once and wake the workers (delivered at commit)."""
    await conn.execute(
        "UPDATE payments SET next_run_at = now(), tries = CASE WHEN %s THEN 0 ELSE tries END WHERE id = %s",
        (reset_tries, payment_id),
    )
    await notifications.announce_work(conn, "payments")


# -- the money side of a succeeded refund -------------------------------------------------------------------


async def add_refunded(conn: Conn, amounts: dict[str, int], now: datetime) -> None:
    """payments.amount_refunded += the refunded amounts (its CHECK keeps it within amount_captured)."""
    async with conn.cursor() as cur:
        # One statement per payment in id order: every transaction locks payments in the same order.
        await cur.executemany(
            "UPDATE payments SET amount_refunded = amount_refunded + %s, updated = %s WHERE id = %s",
            [(amounts[pid], now, pid) for pid in sorted(amounts)],
        )


async def payment_methods(conn: Conn, payment_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The payments' public payment_method, for a refund whose capture left no payable to copy it from."""
    cur = await conn.execute("SELECT id, payment_method FROM payments WHERE id = ANY(%s)", (sorted(set(payment_ids)),))
    return {r["id"]: r["payment_method"] for r in await cur.fetchall()}
