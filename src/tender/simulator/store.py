"""The simulator's own durable record of what it charged (stdlib sqlite3, WAL).

It is the ground truth fault tests compare Tender against: one row per authorization reference
(UNIQUE), so a reference can never be charged twice, and a counter of how often it was asked for.
Only the card's brand and last four digits are stored, never the number or the security code; an
alternative method's row keeps its type and detail (UPI address, wallet, bank) instead.

Every method is synchronous and short. The app calls them from the event loop without awaiting in
between, so a check-then-insert cannot interleave with another request's; the lock covers callers
on other threads, and the UNIQUE constraint covers other processes sharing the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from tender.simulator.cards import Decision

_SCHEMA = """
CREATE TABLE IF NOT EXISTS authorizations (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    payment TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    capture INTEGER NOT NULL,
    status TEXT NOT NULL,
    captured INTEGER NOT NULL,
    amount_captured INTEGER NOT NULL DEFAULT 0,
    amount_refunded INTEGER NOT NULL DEFAULT 0,
    failure_code TEXT,
    decline_code TEXT,
    message TEXT,
    card_brand TEXT NOT NULL,
    card_last4 TEXT NOT NULL,
    return_url TEXT,
    request_hash TEXT NOT NULL,
    request_count INTEGER NOT NULL DEFAULT 1,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    method TEXT NOT NULL DEFAULT 'card',
    method_details TEXT,
    decide_at INTEGER
);
CREATE INDEX IF NOT EXISTS authorizations_payment ON authorizations (payment);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    authorization_id TEXT NOT NULL REFERENCES authorizations (id),
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_code TEXT,
    message TEXT,
    request_hash TEXT NOT NULL,
    request_count INTEGER NOT NULL DEFAULT 1,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_authorization ON operations (authorization_id);
CREATE TABLE IF NOT EXISTS first_charges (
    card_key TEXT PRIMARY KEY,
    reference TEXT NOT NULL
);
"""
# Columns added since the first version, so a record file kept from then (`tender up` keeps one in its
# data folder) still opens: its card rows read as card rows.
_ADDED_COLUMNS = {
    "method": "TEXT NOT NULL DEFAULT 'card'",
    "method_details": "TEXT",
    "decide_at": "INTEGER",
    "card_funding": "TEXT NOT NULL DEFAULT ''",
}


class Registration(StrEnum):
    CREATED = "created"  # first time this reference was seen: it was processed now
    REPLAYED = "replayed"  # seen before with the same request: nothing new happened
    MISMATCH = "mismatch"  # seen before with a different request: refused
    NOT_FOUND = "not_found"  # an operation named an authorization the simulator never saw


@dataclass(slots=True)
class AuthorizationRecord:
    id: str
    reference: str
    payment: str
    amount: int
    currency: str
    capture: bool
    status: str
    captured: bool
    failure_code: str | None
    decline_code: str | None
    message: str | None
    card_brand: str  # "" when not a card (the column is NOT NULL in files made before APMs)
    card_last4: str
    return_url: str | None
    request_hash: str
    created: int
    updated: int
    amount_captured: int = 0
    amount_refunded: int = 0
    request_count: int = 1
    method: str = "card"  # card | upi | wallet | netbanking | bnpl
    method_details: dict[str, str | None] | None = None  # an APM's detail, e.g. {"vpa": "success@upi"}
    decide_at: int | None = None  # unix ms when a test UPI address decides on its own
    card_funding: str = ""  # credit | debit | prepaid for a card ("" otherwise, and in older files)


@dataclass(slots=True)
class OperationRecord:
    id: str
    reference: str
    kind: str  # capture | cancel | refund
    authorization_id: str
    amount: int
    currency: str
    status: str  # succeeded | failed
    failure_code: str | None
    message: str | None
    request_hash: str
    created: int
    request_count: int = 1


@dataclass(frozen=True, slots=True)
class OperationDecision:
    """What a capture/cancel/refund does to its authorization, decided by the app's rules."""

    status: str
    amount: int
    failure_code: str | None = None
    message: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)


# Columns an operation may change on its authorization (they are interpolated into SQL).
_MUTABLE = frozenset({"status", "captured", "amount_captured", "amount_refunded"})
_BOOLS = frozenset({"capture", "captured"})


def _auth(row: sqlite3.Row) -> AuthorizationRecord:
    values: dict[str, Any] = {k: (bool(row[k]) if k in _BOOLS else row[k]) for k in row.keys()}  # noqa: SIM118
    if values.get("method_details") is not None:
        values["method_details"] = json.loads(values["method_details"])
    return AuthorizationRecord(**values)


def _auth_values(record: AuthorizationRecord, columns: list[str]) -> list[Any]:
    values = [getattr(record, c) for c in columns]
    return [json.dumps(v) if isinstance(v, dict) else v for v in values]


def _op(row: sqlite3.Row) -> OperationRecord:
    return OperationRecord(**{k: row[k] for k in row.keys()})  # noqa: SIM118


class SimulatorStore:
    def __init__(self, db_path: str | None = None) -> None:
        self._lock = threading.Lock()
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so the write lock is taken
        # before the idempotency check, not at the first write.
        self._db = sqlite3.connect(db_path or ":memory:", isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL under WAL survives a process crash (what fault tests do); FULL would add an fsync
        # per charge for power loss, which a simulator does not need.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(authorizations)")}
        for name, spec in _ADDED_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE authorizations ADD COLUMN {name} {spec}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- authorizations -------------------------------------------------------------------------

    def register_authorization(self, new: AuthorizationRecord) -> tuple[AuthorizationRecord, Registration]:
        """Insert `new` unless its reference exists; then the stored row and how it compared."""
        columns = [f.name for f in fields(AuthorizationRecord)]
        with self._transaction() as db:
            row = db.execute("SELECT * FROM authorizations WHERE reference = ?", (new.reference,)).fetchone()
            if row is not None:
                db.execute("UPDATE authorizations SET request_count = request_count + 1 WHERE id = ?", (row["id"],))
                existing = _auth(row)
                existing.request_count += 1
                same = existing.request_hash == new.request_hash
                return existing, Registration.REPLAYED if same else Registration.MISMATCH
            db.execute(
                f"INSERT INTO authorizations ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                _auth_values(new, columns),
            )
            return new, Registration.CREATED

    def first_charge(self, card_key: str, reference: str) -> bool:
        """Whether authorization `reference` is the first ever asked of the card `card_key` (a hash, never the
        number): the succeeds-once test card's memory. Asking again for the same reference answers the same."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO first_charges (card_key, reference) VALUES (?, ?)", (card_key, reference))
            row = db.execute("SELECT reference FROM first_charges WHERE card_key = ?", (card_key,)).fetchone()
        return bool(row["reference"] == reference)

    def authorization_by_reference(self, reference: str) -> AuthorizationRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM authorizations WHERE reference = ?", (reference,)).fetchone()
        return None if row is None else _auth(row)

    def authorization_by_id(self, sim_id: str) -> AuthorizationRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM authorizations WHERE id = ?", (sim_id,)).fetchone()
        return None if row is None else _auth(row)

    def resolve_pending(self, sim_id: str, decision: Decision, now: int) -> tuple[AuthorizationRecord | None, bool]:
        """Apply the shopper's (3-D Secure, APM approval) decision once: (the row, whether it changed).

        Only an authorization still `action_required` changes, so a second decision, a late automatic
        UPI decision or one after a cancel is ignored; an approval captures when the request asked to.
        """
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE authorizations SET status = ?, captured = (? AND capture), amount_captured ="
                " CASE WHEN ? AND capture THEN amount ELSE 0 END, failure_code = ?, decline_code = ?,"
                " message = ?, updated = ? WHERE id = ? AND status = 'action_required'",
                (
                    decision.status,
                    decision.status == "approved",
                    decision.status == "approved",
                    decision.failure_code,
                    decision.decline_code,
                    decision.message,
                    now,
                    sim_id,
                ),
            )
            row = db.execute("SELECT * FROM authorizations WHERE id = ?", (sim_id,)).fetchone()
        return (None if row is None else _auth(row)), cur.rowcount == 1

    def list_authorizations(self, payment: str | None = None) -> list[AuthorizationRecord]:
        sql = "SELECT * FROM authorizations"
        args: tuple[str, ...] = ()
        if payment is not None:
            sql, args = sql + " WHERE payment = ?", (payment,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created, rowid", args).fetchall()
        return [_auth(r) for r in rows]

    # -- captures, cancels, refunds -------------------------------------------------------------

    def register_operation(
        self,
        new: OperationRecord,
        authorization: str,
        rule: Callable[[AuthorizationRecord], OperationDecision],
    ) -> tuple[OperationRecord | None, Registration]:
        """Record an operation on `authorization` (its reference or sim id) once, applying `rule`."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM operations WHERE reference = ?", (new.reference,)).fetchone()
            if row is not None:
                db.execute("UPDATE operations SET request_count = request_count + 1 WHERE id = ?", (row["id"],))
                existing = _op(row)
                existing.request_count += 1
                same = existing.request_hash == new.request_hash and existing.kind == new.kind
                return existing, Registration.REPLAYED if same else Registration.MISMATCH
            auth_row = db.execute(
                "SELECT * FROM authorizations WHERE id = ? OR reference = ? ORDER BY id = ? DESC LIMIT 1",
                (authorization, authorization, authorization),
            ).fetchone()
            if auth_row is None:
                return None, Registration.NOT_FOUND
            auth = _auth(auth_row)
            decision = rule(auth)
            new.authorization_id = auth.id
            new.currency = auth.currency
            new.amount = decision.amount
            new.status = decision.status
            new.failure_code = decision.failure_code
            new.message = decision.message
            columns = [f.name for f in fields(OperationRecord)]
            db.execute(
                f"INSERT INTO operations ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [getattr(new, c) for c in columns],
            )
            if decision.status == "succeeded" and decision.changes:
                if not _MUTABLE.issuperset(decision.changes):
                    raise ValueError("an operation may not change those columns")
                sets = ", ".join(f"{c} = ?" for c in decision.changes)
                db.execute(
                    f"UPDATE authorizations SET {sets}, updated = ? WHERE id = ?",
                    [*decision.changes.values(), new.created, auth.id],
                )
            return new, Registration.CREATED

    def operation_by_reference(self, reference: str) -> OperationRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM operations WHERE reference = ?", (reference,)).fetchone()
        return None if row is None else _op(row)

    def list_records(
        self, *, created_gte: int, created_lt: int, limit: int, starting_after: str | None = None
    ) -> tuple[list[AuthorizationRecord | OperationRecord], bool]:
        """Authorizations and operations created in [created_gte, created_lt) (unix seconds), oldest first by
        (created, id), at most `limit` after the record `starting_after` (an id of either kind); and whether
        more follow. Reconciliation reads every page (`GET /v1/records`)."""
        union = (
            "SELECT 'authorization' AS kind, id, created FROM authorizations UNION ALL"
            " SELECT 'operation', id, created FROM operations"
        )
        where, args = "created >= ? AND created < ?", [created_gte, created_lt]
        if starting_after is not None:
            with self._lock:
                after = self._db.execute(
                    f"SELECT created, id FROM ({union}) WHERE id = ?", (starting_after,)
                ).fetchone()
            if after is not None:
                where += " AND (created, id) > (?, ?)"
                args += [after["created"], after["id"]]
        with self._lock:
            keys = self._db.execute(
                f"SELECT kind, id FROM ({union}) WHERE {where} ORDER BY created, id LIMIT ?", (*args, limit + 1)
            ).fetchall()
            records: list[AuthorizationRecord | OperationRecord] = []
            for key in keys[:limit]:
                table, make = ("authorizations", _auth) if key["kind"] == "authorization" else ("operations", _op)
                row = self._db.execute(f"SELECT * FROM {table} WHERE id = ?", (key["id"],)).fetchone()
                records.append(make(row))
        return records, len(keys) > limit

    def list_operations(self, authorization_id: str | None = None) -> list[OperationRecord]:
        sql = "SELECT * FROM operations"
        args: tuple[str, ...] = ()
        if authorization_id is not None:
            sql, args = sql + " WHERE authorization_id = ?", (authorization_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created, rowid", args).fetchall()
        return [_op(r) for r in rows]
