"""Processor health: each processor's circuit breaker and the operator's pause, shared through PostgreSQL.

The payment pump asks `availability` before it sends new work to a processor and tells `record` how each call
went. The rules are domain/circuit.py's; the state is one processor_health row per processor and account, so
every API and worker process, on any machine, sees one circuit. Reading is cached for `refresh_seconds` per
process and shared by the readers waiting on it (a batch's authorizations all ask at once: one read answers
them); this process's own state changes forget it at once, other processes' show within `refresh_seconds`.
A half-open circuit's probe slot is taken by a locked update, never from the cache, so however many workers
there are, a processor that is still down gets a trickle of probes. (The calls themselves are paced by the
payment pump: services/payment_operations.py `_call`.)

The breaker protects payments; it must never stop them. A health-table problem (the table locked, the
database restarting) is logged and the processor treated as closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tender.domain import operator_events as types
from tender.domain.circuit import (
    Circuit,
    CircuitPolicy,
    CircuitState,
    ProcessorHealthRecord,
    Transition,
    calls_in_window,
    effective_state,
    failure_rate,
    grant_probe,
    on_outcomes,
    probe_free,
)
from tender.domain.operator_events import OperatorEvent
from tender.errors import NotFound
from tender.store import operator_events
from tender.store import processor_health as store
from tender.store.db import Conn, Database, Page

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500
OWN_ACCOUNT = ""
PROBE_RECHECK_SECONDS = 5.0  # Tender's own account at a processor (not a merchant's processor account)

_EVENT_OF_STATE = {
    CircuitState.OPEN: types.CIRCUIT_OPENED,
    CircuitState.HALF_OPEN: types.CIRCUIT_HALF_OPENED,
    CircuitState.CLOSED: types.CIRCUIT_CLOSED,
}


@dataclass(frozen=True, slots=True)
class CallOutcome:
    processor: str
    ok: bool  # the processor answered (approved, declined, action required, not found)
    account: str = ""  # "" = Tender's own account; else a processor_accounts id


@dataclass(frozen=True, slots=True)
class Availability:
    processor: str
    usable: bool  # may be sent new work now (closed, or a half-open probe slot)
    reason: str | None  # None | "open" | "paused"
    retry_at: datetime | None  # open: when it half-opens (its probe slot taken: when to ask again); else None
    # Usable only as a half-open probe: this caller holds one probe slot, so send it ONE call, not a batch.
    probe: bool = False


@dataclass(frozen=True, slots=True)
class ProcessorStatus:
    """What an operator sees of one processor (GET /admin/v1/processors, `tender processor list`, /metrics)."""

    name: str
    status: CircuitState
    paused: bool
    consecutive_failures: int
    failure_rate: Decimal
    calls_in_window: int
    opened_at: datetime | None
    retry_at: datetime | None
    paused_reason: str | None
    paused_at: datetime | None
    # The circuits of merchants' own accounts at this processor (processor_accounts), each apart from Tender's.
    accounts: tuple[AccountCircuit, ...] = ()


@dataclass(frozen=True, slots=True)
class AccountCircuit:
    account: str
    status: CircuitState
    consecutive_failures: int
    failure_rate: Decimal
    calls_in_window: int
    opened_at: datetime | None
    retry_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Snapshot:
    rows: dict[tuple[str, str], ProcessorHealthRecord]
    db_now: datetime
    taken: float  # time.monotonic() when read

    def now(self) -> datetime:
        return self.db_now + timedelta(seconds=time.monotonic() - self.taken)


class ProcessorHealth:
    """One per process (the worker's pumps and the API share it)."""

    def __init__(self, db: Database, policy: CircuitPolicy, *, refresh_seconds: float = 1.0) -> None:
        self.db = db
        self.policy = policy
        self.refresh_seconds = refresh_seconds
        self._cache: dict[tuple[frozenset[str], str], _Snapshot] = {}
        # A read in flight, shared: a batch's payments all ask at once, and one read answers them all.
        self._reading: dict[tuple[frozenset[str], str], asyncio.Future[_Snapshot | None]] = {}

    def forget(self) -> None:
        """Read the table afresh next time (after this process changed it)."""
        self._cache.clear()

    async def availability(self, processors: Iterable[str], account: str = "") -> dict[str, Availability]:
        """Whether each processor may take NEW work now (an authorization; look-ups, captures and refunds of
        work already there go on whatever the circuit says). A half-open one is usable for the caller that gets
        one of its probe slots (`probe=True`)."""
        names = list(dict.fromkeys(processors))
        snapshot = await self._snapshot(names, account)
        result: dict[str, Availability] = {}
        for name in names:
            result[name] = await self._available(name, account, snapshot)
        return result

    async def record(self, outcomes: Sequence[CallOutcome]) -> None:
        """Apply a batch's call outcomes, in order, in one short transaction: each circuit's row locked (created
        on first use), its transitions written as operator events and logged. Never raises."""
        if not outcomes:
            return
        grouped: dict[tuple[str, str], list[bool]] = defaultdict(list)
        for outcome in outcomes:
            grouped[(outcome.processor, outcome.account)].append(outcome.ok)
        changed = True
        try:
            async with self.db.transaction() as conn:
                changed = False
                for (processor, account), oks in sorted(grouped.items()):  # one lock order: no deadlocks
                    row, now = await store.lock(conn, processor, account)
                    applied = on_outcomes(row.circuit, self.policy, oks, now)
                    await store.save_circuit(conn, processor, account, applied.circuit)
                    await _report(conn, processor, account, applied.transitions, applied.circuit, self.policy, now)
                    changed = changed or bool(applied.transitions)
        except Exception:
            log.exception("processor health: could not record %d call outcomes; circuits unchanged", len(outcomes))
        # Only a state change makes the cached snapshot wrong: forgetting it after every batch made every batch's
        # payments read the table again (issue 16: 13 % of the worker's samples went to those reads).
        if changed:
            self.forget()

    async def _snapshot(self, names: list[str], account: str) -> _Snapshot | None:
        key = (frozenset(names), account)
        while True:
            cached = self._cache.get(key)
            if cached is not None and time.monotonic() - cached.taken < self.refresh_seconds:
                return cached
            reading = self._reading.get(key)
            if reading is None:
                break
            await asyncio.wait({reading})  # raises only if this caller is cancelled
            if not reading.cancelled():
                return reading.result()
            # its reader was cancelled: look again (read ourselves)
        future: asyncio.Future[_Snapshot | None] = asyncio.get_running_loop().create_future()
        self._reading[key] = future
        try:
            snapshot = await self._read(key, names, account)
        except BaseException:  # cancelled: whoever waited on this read reads for itself
            future.cancel()
            raise
        finally:
            self._reading.pop(key, None)
        future.set_result(snapshot)
        return snapshot

    async def _read(self, key: tuple[frozenset[str], str], names: list[str], account: str) -> _Snapshot | None:
        """The circuits of `names` from the table, cached under `key`; None (treated as closed) if unreadable."""
        try:
            async with self.db.connection() as conn:
                rows, db_now = await store.read(conn, names, list({OWN_ACCOUNT, account}))
        except Exception:
            log.exception("processor health: could not read circuits; treating them as closed")
            return None
        snapshot = _Snapshot({(r.processor, r.account): r for r in rows}, db_now, time.monotonic())
        self._cache[key] = snapshot
        return snapshot

    async def _available(self, name: str, account: str, snapshot: _Snapshot | None) -> Availability:
        if snapshot is None:
            return Availability(name, True, None, None)
        own = snapshot.rows.get((name, OWN_ACCOUNT))
        if own is not None and own.paused:
            return Availability(name, False, "paused", None)
        row = snapshot.rows.get((name, account))
        if row is None:
            return Availability(name, True, None, None)
        now = snapshot.now()
        state = effective_state(row.circuit, self.policy, now)
        if state is CircuitState.CLOSED:
            return Availability(name, True, None, None)
        if state is CircuitState.OPEN:
            return Availability(name, False, "open", row.circuit.retry_at)
        if not probe_free(row.circuit, self.policy, now):
            return Availability(name, False, "open", _probe_answer_due(row.circuit, now))
        return await self._take_probe(name, account)

    async def _take_probe(self, name: str, account: str) -> Availability:
        try:
            async with self.db.transaction() as conn:
                row, now = await store.lock(conn, name, account)
                applied, granted = grant_probe(row.circuit, self.policy, now)
                if applied.circuit != row.circuit:
                    await store.save_circuit(conn, name, account, applied.circuit)
                await _report(conn, name, account, applied.transitions, applied.circuit, self.policy, now)
        except Exception:
            log.exception("processor health: could not take a probe slot of %s; treating it as closed", name)
            return Availability(name, True, None, None)
        self.forget()
        circuit = applied.circuit
        if granted:
            return Availability(name, True, None, None, probe=True)
        if circuit.state is CircuitState.CLOSED:  # closed meanwhile by another worker's probe
            return Availability(name, True, None, None)
        if circuit.state is CircuitState.OPEN:
            return Availability(name, False, "open", circuit.retry_at)
        return Availability(name, False, "open", _probe_answer_due(circuit, now))


def _probe_answer_due(circuit: Circuit, now: datetime) -> datetime | None:
    """When work kept from a half-open processor (its probe slot taken) should ask again: soon, since the probe's
    answer usually comes within seconds and may close the circuit; at the latest when the slot frees."""
    soon = now + timedelta(seconds=PROBE_RECHECK_SECONDS)
    return soon if circuit.probes_expire is None else min(soon, circuit.probes_expire)


async def _report(
    conn: Conn,
    processor: str,
    account: str,
    transitions: Sequence[Transition],
    circuit: Circuit,
    policy: CircuitPolicy,
    now: datetime,
) -> None:
    """Each state change as an operator event (same transaction) and a log line: a warning when opening."""
    for t in transitions:
        data: dict[str, Any] = {
            "processor": processor,
            "account": account,
            "status": t.new.value,
            "previous_status": t.old.value,
            "reason": t.reason.value,
            "consecutive_failures": circuit.consecutive_failures,
            "failure_rate": str(failure_rate(circuit, policy, now)),
            "calls_in_window": calls_in_window(circuit, policy, now),
            "retry_at": t.retry_at.isoformat() if t.retry_at is not None else None,
        }
        await operator_events.insert(conn, _EVENT_OF_STATE[t.new], data)
        where = f"{processor} (account {account})" if account else processor
        if t.new is CircuitState.OPEN:
            log.warning(
                "processor %s: circuit opened (%s; %d failures in a row, failure rate %s); new work skips it until %s",
                where,
                t.reason.value,
                circuit.consecutive_failures,
                data["failure_rate"],
                data["retry_at"],
            )
        else:
            log.info("processor %s: circuit %s -> %s (%s)", where, t.old.value, t.new.value, t.reason.value)


# --- what an operator sees and does --------------------------------------------------------------------------


def _circuit(account: str, circuit: Circuit, policy: CircuitPolicy, now: datetime) -> AccountCircuit:
    state = effective_state(circuit, policy, now)
    return AccountCircuit(
        account=account,
        status=state,
        consecutive_failures=circuit.consecutive_failures,
        failure_rate=failure_rate(circuit, policy, now),
        calls_in_window=calls_in_window(circuit, policy, now),
        opened_at=circuit.opened_at if state is not CircuitState.CLOSED else None,
        retry_at=circuit.retry_at if state is CircuitState.OPEN else None,
    )


def _status(
    name: str,
    row: ProcessorHealthRecord | None,
    policy: CircuitPolicy,
    now: datetime,
    accounts: Sequence[ProcessorHealthRecord] = (),
) -> ProcessorStatus:
    own = _circuit(OWN_ACCOUNT, row.circuit if row is not None else Circuit(), policy, now)
    return ProcessorStatus(
        name=name,
        status=own.status,
        paused=row.paused if row is not None else False,
        consecutive_failures=own.consecutive_failures,
        failure_rate=own.failure_rate,
        calls_in_window=own.calls_in_window,
        opened_at=own.opened_at,
        retry_at=own.retry_at,
        paused_reason=row.paused_reason if row is not None else None,
        paused_at=row.paused_at if row is not None else None,
        accounts=tuple(_circuit(a.account, a.circuit, policy, now) for a in accounts),
    )


async def statuses(db: Database, policy: CircuitPolicy, processors: Iterable[str]) -> list[ProcessorStatus]:
    """Each processor's status (Tender's own account, and merchants' accounts at it), in the order given; one
    never called shows closed."""
    names = list(processors)
    async with db.connection() as conn:
        rows, now = await store.read(conn, names, None)
    own = {r.processor: r for r in rows if r.account == OWN_ACCOUNT}
    accounts: dict[str, list[ProcessorHealthRecord]] = defaultdict(list)
    for r in rows:
        if r.account != OWN_ACCOUNT:
            accounts[r.processor].append(r)
    return [_status(name, own.get(name), policy, now, accounts[name]) for name in names]


class PauseRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    reason: str | None = Field(
        default=None, min_length=1, max_length=MAX_REASON_LENGTH, description="Why (at most 500 characters)."
    )


class ResumeRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def check_on(processors_on: Iterable[str], processor: str) -> None:
    """A 404 for a processor that is unknown or off (never quoting the name asked for)."""
    if processor not in set(processors_on):
        raise NotFound("No such processor: it is unknown or not configured on this Tender", param="name")


async def set_paused_in(
    conn: Conn, policy: CircuitPolicy, processor: str, *, paused: bool, reason: str | None = None
) -> ProcessorStatus:
    """Pause (new payments go elsewhere or wait) or resume a processor, in the caller's transaction; an operator
    event and a log line when that changes anything. The caller has checked the processor is on (check_on)."""
    row, _ = await store.lock(conn, processor, OWN_ACCOUNT)
    await store.set_paused(conn, processor, paused=paused, reason=reason)
    if row.paused != paused or (paused and row.paused_reason != reason):
        data = {"processor": processor, "reason": reason} if paused else {"processor": processor}
        await operator_events.insert(conn, types.PROCESSOR_PAUSED if paused else types.PROCESSOR_RESUMED, data)
        if paused:
            log.warning("processor %s paused by the operator: new payments skip it until resumed", processor)
        else:
            log.info("processor %s resumed by the operator", processor)
    after, now = await store.lock(conn, processor, OWN_ACCOUNT)
    return _status(processor, after, policy, now)


async def set_paused(
    db: Database, policy: CircuitPolicy, processor: str, *, paused: bool, reason: str | None = None
) -> ProcessorStatus:
    """set_paused_in in a transaction of its own (the CLI)."""
    async with db.transaction() as conn:
        return await set_paused_in(conn, policy, processor, paused=paused, reason=reason)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def processor_object(status: ProcessorStatus) -> dict[str, Any]:
    return {
        "object": "processor",
        "name": status.name,
        "status": status.status.value,
        "paused": status.paused,
        "consecutive_failures": status.consecutive_failures,
        "failure_rate": str(status.failure_rate),
        "calls_in_window": status.calls_in_window,
        "opened_at": _iso(status.opened_at),
        "retry_at": _iso(status.retry_at),
        "paused_reason": status.paused_reason,
        "paused_at": _iso(status.paused_at),
        "accounts": [
            {
                "account": a.account,
                "status": a.status.value,
                "consecutive_failures": a.consecutive_failures,
                "failure_rate": str(a.failure_rate),
                "calls_in_window": a.calls_in_window,
                "opened_at": _iso(a.opened_at),
                "retry_at": _iso(a.retry_at),
            }
            for a in status.accounts
        ],
    }


def operator_event_object(event: OperatorEvent) -> dict[str, Any]:
    return {"id": event.id, "object": "operator_event", "type": event.type, "data": event.data,
            "created": _iso(event.created)}  # fmt: skip


async def list_events(db: Database, *, type: str | None, limit: int, starting_after: str | None) -> Page[OperatorEvent]:
    async with db.connection() as conn:
        return await operator_events.list_(conn, type=type, limit=limit, starting_after=starting_after)
