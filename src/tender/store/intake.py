"""SQL for accepting payments in batches (services/intake.py): one transaction, two round trips, whatever the
batch's size. Rows travel as one JSON parameter per statement (orjson on our side, PostgreSQL's JSON input on
the other): far less work on both sides than a statement per row or a Python-dumped array per column."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from tender.domain.models import Payment
from tender.store.db import Conn
from tender.store.idempotency import LOCK_PREFIX
from tender.store.payments import PAYMENT_COLUMNS


@dataclass(frozen=True, slots=True)
class NewCard:
    """A vault_cards row as inserted: the number and CVC encrypted by the vault."""

    id: str
    merchant_id: str
    number_ct: bytes
    cvc_ct: bytes | None
    fingerprint: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    funding: str
    holder_name: str | None


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """An Idempotency-Key to reserve for item `i` of the batch, with its request's keyed fingerprint."""

    i: int
    merchant_id: str
    key: str
    request_hash: bytes


@dataclass(frozen=True, slots=True)
class Claimed:
    """What reserving a key found (store/idempotency.py's Reservation, per item)."""

    free: bool  # no other transaction held the key's lock
    reserved: bool  # this transaction inserted the key: the first request with it


@dataclass(frozen=True, slots=True)
class DeclineQuery:
    """A card whose recent declines the velocity check needs: item `i`'s card fingerprint within its merchant."""

    i: int
    merchant_id: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Found:
    """The batch's reads: per item its key's reservation; per merchant its routing rules (absent: none); per
    decline query the newest decline times in the window, newest first."""

    claims: dict[int, Claimed]
    rules: dict[str, list[dict[str, Any]]]
    declines: dict[int, list[datetime]]


@dataclass(frozen=True, slots=True)
class Answer:
    """The stored answer of a keyed request, written on its key's row."""

    merchant_id: str
    key: str
    status_code: int
    body: bytes
    headers: dict[str, str]


_RESERVE = (
    # Each key's transaction-scoped advisory lock is tried (without waiting) before its insert reads the row:
    # the lock is the one store/idempotency.py takes, so a one-by-one request with the same key meets it.
    "WITH k AS MATERIALIZED (SELECT k.i, k.merchant_id, k.key, decode(k.request_hash, 'hex') AS request_hash,"
    " pg_try_advisory_xact_lock(hashtextextended(%s || k.merchant_id || ':' || k.key, 0)) AS free"
    " FROM jsonb_to_recordset(%s) AS k(i int, merchant_id text, key text, request_hash text)),"
    " ins AS (INSERT INTO idempotency_keys (merchant_id, key, request_hash)"
    " SELECT merchant_id, key, request_hash FROM k WHERE free ON CONFLICT DO NOTHING RETURNING merchant_id, key)"
    " SELECT k.i, k.free, ins.key IS NOT NULL AS reserved FROM k LEFT JOIN ins USING (merchant_id, key)"
)
_RULES = "SELECT merchant_id, rules FROM routing_rules WHERE merchant_id = ANY(%s)"
_DECLINES = (
    # services/velocity.py's per-card query for many cards at once, on the same index (migration 0007).
    "SELECT q.i, d.updated FROM jsonb_to_recordset(%s) AS q(i int, merchant_id text, fingerprint text)"
    " CROSS JOIN LATERAL (SELECT p.updated FROM payments p WHERE p.merchant_id = q.merchant_id"
    " AND p.payment_method -> 'card' ->> 'fingerprint' = q.fingerprint AND p.status = 'failed'"
    " AND p.failure_code = ANY(%s) AND p.updated > %s ORDER BY p.updated DESC LIMIT %s) d"
    " ORDER BY q.i, d.updated DESC"
)


async def begin_and_read(
    conn: Conn,
    *,
    keys: Sequence[KeyClaim],
    merchants: Collection[str],
    declines: Sequence[DeclineQuery],
    decline_codes: Collection[str],
    since: datetime,
    limit: int,
) -> Found:
    """BEGIN on `conn` (autocommit: `Database.own_transaction`), reserve the keys, read the merchants' routing
    rules and the cards' recent declines: one round trip (a pipeline)."""
    async with conn.pipeline():
        await conn.execute("BEGIN")
        reserve = await conn.execute(_RESERVE, (LOCK_PREFIX, _json([_key_row(k) for k in keys]))) if keys else None
        rules = await conn.execute(_RULES, (list(merchants),))
        queries = _json([_decline_row(d) for d in declines])
        found = await conn.execute(_DECLINES, (queries, list(decline_codes), since, limit)) if declines else None
    claims = {row["i"]: Claimed(row["free"], row["reserved"]) for row in await reserve.fetchall()} if reserve else {}
    by_merchant = {row["merchant_id"]: row["rules"] for row in await rules.fetchall()}
    times: dict[int, list[datetime]] = {}
    for row in await found.fetchall() if found else []:
        times.setdefault(row["i"], []).append(row["updated"])
    return Found(claims, by_merchant, times)


_CARD_COLUMNS = ", ".join(f.name for f in fields(NewCard))
_PAYMENT_INSERT_COLUMNS = ", ".join([*PAYMENT_COLUMNS, "next_run_at"])


async def write_and_commit(
    conn: Conn,
    *,
    unclaim: Sequence[tuple[str, str]],
    cards: Sequence[NewCard],
    payments: Sequence[Payment],
    answers: Sequence[Answer],
) -> None:
    """In one round trip: give back the keys of requests left to the one-by-one path (`unclaim`: merchant, key),
    insert the cards and the payments (due at once), store the keyed answers and COMMIT. A reference another
    payment of the merchant holds fails the payments' INSERT (no ON CONFLICT here): the pipeline is aborted,
    COMMIT not run, and the error raised; the caller's `own_transaction` rolls the batch back."""
    async with conn.pipeline():
        if unclaim:
            await conn.execute(
                "DELETE FROM idempotency_keys k USING jsonb_to_recordset(%s) AS d(merchant_id text, key text)"
                " WHERE k.merchant_id = d.merchant_id AND k.key = d.key",
                (_json([{"merchant_id": m, "key": k} for m, k in unclaim]),),
            )
        if cards:
            await conn.execute(
                f"INSERT INTO vault_cards ({_CARD_COLUMNS}) SELECT {_CARD_COLUMNS}"
                " FROM jsonb_populate_recordset(NULL::vault_cards, %s)",
                (_json([_card_row(c) for c in cards]),),
            )
        if payments:
            await conn.execute(
                f"INSERT INTO payments ({_PAYMENT_INSERT_COLUMNS}) SELECT {_PAYMENT_INSERT_COLUMNS}"
                " FROM jsonb_populate_recordset(NULL::payments, %s)",
                (_json([_payment_row(p) for p in payments]),),
            )
        if answers:
            await conn.execute(
                "UPDATE idempotency_keys k SET status_code = a.status_code,"
                " response_body = convert_to(a.body, 'UTF8'), response_headers = a.headers FROM jsonb_to_recordset(%s)"
                " AS a(merchant_id text, key text, status_code int, body text, headers jsonb)"
                " WHERE k.merchant_id = a.merchant_id AND k.key = a.key",
                (_json([_answer_row(a) for a in answers]),),
            )
        await conn.execute("COMMIT")


def _json(rows: list[dict[str, Any]]) -> Jsonb:
    return Jsonb(rows)  # encoded by orjson (store/db.py sets it as psycopg's JSON dumper)


def _bytea(value: bytes | None) -> str | None:
    return "\\x" + value.hex() if value is not None else None  # bytea's text input


def _key_row(k: KeyClaim) -> dict[str, Any]:
    return {"i": k.i, "merchant_id": k.merchant_id, "key": k.key, "request_hash": k.request_hash.hex()}


def _decline_row(d: DeclineQuery) -> dict[str, Any]:
    return {"i": d.i, "merchant_id": d.merchant_id, "fingerprint": d.fingerprint}


def _card_row(c: NewCard) -> dict[str, Any]:
    row = {f.name: getattr(c, f.name) for f in fields(NewCard)}
    row["number_ct"] = _bytea(c.number_ct)
    row["cvc_ct"] = _bytea(c.cvc_ct)
    return row


def _payment_row(p: Payment) -> dict[str, Any]:
    row = {name: getattr(p, name) for name in PAYMENT_COLUMNS}
    row["next_run_at"] = p.created  # due at once
    return row


def _answer_row(a: Answer) -> dict[str, Any]:
    return {
        "merchant_id": a.merchant_id,
        "key": a.key,
        "status_code": a.status_code,
        "body": a.body.decode(),
        "headers": a.headers,
    }
