"""SQL for accepting payments in batches (services/intake.py): one transaction, two round trips whatever the
batch's size, and every row written once (a key's row with its answer, not reserved then answered: the UPDATE of
the answers cost PostgreSQL more than all the inserts). Rows travel as one JSON parameter per statement (orjson on
our side, PostgreSQL's JSON input on the other): far less work on both sides than a statement per row or a
Python-dumped array per column."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from tender.domain.models import Payment
from tender.store.db import Conn
from tender.store.idempotency import LOCK_PREFIX
from tender.store.payments import CARD_COLUMNS, PAYMENT_COLUMNS, NewCard


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """An Idempotency-Key that item `i` of the batch comes with."""

    i: int
    merchant_id: str
    key: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """What claiming a key found."""

    free: bool  # no other transaction held the key's lock: it is this batch's until it ends
    used: bool  # a request with this key has committed before (a replay or a mismatch)


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
    """A keyed request's row: its keyed fingerprint and stored answer."""

    merchant_id: str
    key: str
    request_hash: bytes
    status_code: int
    body: bytes
    headers: dict[str, str]


_CLAIM = (
    # Each key's transaction-scoped advisory lock, tried without waiting: the lock store/idempotency.py takes, so a
    # one-by-one request with the same key meets it. Under the lock no other Tender transaction can write the key:
    # it is inserted with its answer in `write_and_commit`. (A request with the key that committed after this
    # statement's snapshot was taken is not seen here: the insert then fails, and the batch goes one by one.)
    "SELECT k.i, pg_try_advisory_xact_lock(hashtextextended(%s || k.merchant_id || ':' || k.key, 0)) AS free,"
    # A scalar subquery with LIMIT, not EXISTS: EXISTS may be planned as a hash join over the whole table (it
    # was, by the generic plan made while the table was small: 4 ms a batch); this one is one index probe a key.
    " (SELECT 1 FROM idempotency_keys x WHERE x.merchant_id = k.merchant_id AND x.key = k.key LIMIT 1) IS NOT NULL"
    " AS used"
    " FROM jsonb_to_recordset(%s) AS k(i int, merchant_id text, key text)"
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
    """BEGIN on `conn` (autocommit: `Database.own_transaction`), claim the keys, read the merchants' routing
    rules and the cards' recent declines: one round trip (a pipeline)."""
    async with conn.pipeline():
        await conn.execute("BEGIN")
        claim = await conn.execute(_CLAIM, (LOCK_PREFIX, _json([_key_row(k) for k in keys]))) if keys else None
        rules = await conn.execute(_RULES, (list(merchants),))
        queries = _json([_decline_row(d) for d in declines])
        found = await conn.execute(_DECLINES, (queries, list(decline_codes), since, limit)) if declines else None
    claims = {row["i"]: Claimed(row["free"], row["used"]) for row in await claim.fetchall()} if claim else {}
    by_merchant = {row["merchant_id"]: row["rules"] for row in await rules.fetchall()}
    times: dict[int, list[datetime]] = {}
    for row in await found.fetchall() if found else []:
        times.setdefault(row["i"], []).append(row["updated"])
    return Found(claims, by_merchant, times)


_PAYMENT_INSERT_COLUMNS = ", ".join([*PAYMENT_COLUMNS, "next_run_at"])


async def write_and_commit(
    conn: Conn, *, cards: Sequence[NewCard], payments: Sequence[Payment], answers: Sequence[Answer]
) -> None:
    """In one round trip: insert the cards, the payments (due at once) and the keyed requests' rows with their
    answers, and COMMIT. No ON CONFLICT: a reference another payment of the merchant holds, or a key written
    since it was claimed, fails its INSERT, the pipeline is aborted (COMMIT not run) and the error raised; the
    caller's `own_transaction` rolls the batch back."""
    async with conn.pipeline():
        if cards:
            await conn.execute(
                f"INSERT INTO vault_cards ({CARD_COLUMNS}) SELECT {CARD_COLUMNS}"
                " FROM jsonb_populate_recordset(NULL::vault_cards, %s)",
                (_json([_card_row(c) for c in cards]),),
            )
        await conn.execute(
            f"INSERT INTO payments ({_PAYMENT_INSERT_COLUMNS}) SELECT {_PAYMENT_INSERT_COLUMNS}"
            " FROM jsonb_populate_recordset(NULL::payments, %s)",
            (_json([_payment_row(p) for p in payments]),),
        )
        if answers:
            await conn.execute(
                "INSERT INTO idempotency_keys (merchant_id, key, request_hash, status_code, response_body,"
                " response_headers) SELECT a.merchant_id, a.key, decode(a.request_hash, 'hex'), a.status_code,"
                " convert_to(a.body, 'UTF8'), a.headers FROM jsonb_to_recordset(%s) AS a(merchant_id text, key text,"
                " request_hash text, status_code int, body text, headers jsonb)",
                (_json([_answer_row(a) for a in answers]),),
            )
        await conn.execute("COMMIT")


def _json(rows: list[dict[str, Any]]) -> Jsonb:
    return Jsonb(rows)  # encoded by orjson (store/db.py sets it as psycopg's JSON dumper)


def _bytea(value: bytes | None) -> str | None:
    return "\\x" + value.hex() if value is not None else None  # bytea's text input


def _key_row(k: KeyClaim) -> dict[str, Any]:
    return {"i": k.i, "merchant_id": k.merchant_id, "key": k.key}


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
        "request_hash": a.request_hash.hex(),
        "status_code": a.status_code,
        "body": a.body.decode(),
        "headers": a.headers,
    }
