"""A processor's circuit breaker: the pure rules (no I/O, time is an argument).

Closed, a processor takes all work. It opens after `failures_to_open` failures in a row, or when at least
`failure_rate` of at least `min_calls` calls in the last `window_seconds` failed: new work then skips it
(routing takes the next processor, or the payment waits). After `open_seconds` it is half-open: a few probe
calls at a time (`half_open_probes`, each slot held at most `probe_seconds`) find out whether it is back.
`successes_to_close` probe successes close it; a probe failure opens it again, each time for twice as long
(up to `max_open_seconds`), so a processor that stays down gets a trickle of probes, not a flood.

A failure is a call the processor did not answer (a TRANSIENT or UNKNOWN outcome: refused, 5xx, timeout);
any answer, a decline too, is a success: the breaker is about the processor being up, not about payments.
The window is bucketed (six buckets per window) so the state stays small enough for one database row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

BUCKETS_PER_WINDOW = 6


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class TransitionReason(StrEnum):
    CONSECUTIVE_FAILURES = "consecutive_failures"
    FAILURE_RATE = "failure_rate"
    OPEN_ELAPSED = "open_elapsed"  # open -> half_open: time to probe
    PROBE_FAILED = "probe_failed"  # half_open -> open
    PROBE_SUCCEEDED = "probe_succeeded"  # half_open -> closed


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    failures_to_open: int = 5
    failure_rate: Decimal = Decimal("0.5")
    window_seconds: int = 60
    min_calls: int = 20
    open_seconds: float = 30.0
    max_open_seconds: float = 300.0  # the open time doubles with each failed probe, up to this
    half_open_probes: int = 1  # probe calls in flight at once, across every worker
    probe_seconds: float = 30.0  # a probe slot whose call never reported back is free again after this
    successes_to_close: int = 1

    def __post_init__(self) -> None:
        if self.failures_to_open < 1 or self.min_calls < 1 or self.half_open_probes < 1:
            raise ValueError("failures_to_open, min_calls and half_open_probes are at least 1")
        if self.successes_to_close < 1 or self.window_seconds < 1:
            raise ValueError("successes_to_close and window_seconds are at least 1")
        if not Decimal(0) < self.failure_rate <= Decimal(1):
            raise ValueError("failure_rate is in (0, 1]")
        if self.open_seconds <= 0 or self.max_open_seconds < self.open_seconds or self.probe_seconds <= 0:
            raise ValueError("open_seconds > 0, max_open_seconds >= open_seconds, probe_seconds > 0")

    @property
    def bucket_seconds(self) -> int:
        return max(1, math.ceil(self.window_seconds / BUCKETS_PER_WINDOW))

    def open_duration(self, reopened: int) -> timedelta:
        """How long the circuit stays open after its `reopened`-th failed probe in a row (0: first opening)."""
        seconds = min(self.max_open_seconds, self.open_seconds * 2.0 ** min(reopened, 32))
        return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Bucket:
    """Calls and failures of the `bucket_seconds` starting at `start` (Unix seconds)."""

    start: int
    calls: int = 0
    failures: int = 0


@dataclass(frozen=True, slots=True)
class Circuit:
    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    buckets: tuple[Bucket, ...] = ()
    opened_at: datetime | None = None
    retry_at: datetime | None = None  # open: when it half-opens
    reopened: int = 0  # failed probes since it first opened (the open time grows with them)
    probe_successes: int = 0  # half_open: successes so far
    probes_out: int = 0  # half_open: probe slots granted and not yet reported
    probes_expire: datetime | None = None  # the granted slots count until then


@dataclass(frozen=True, slots=True)
class Transition:
    old: CircuitState
    new: CircuitState
    reason: TransitionReason
    at: datetime
    retry_at: datetime | None = None  # to open: when it will half-open


@dataclass(frozen=True, slots=True)
class Applied:
    """A circuit after outcomes or time, and the state changes that got it there (for events and logs)."""

    circuit: Circuit
    transitions: list[Transition] = field(default_factory=list)


def _epoch(now: datetime) -> int:
    return math.floor(now.timestamp())


def window_buckets(circuit: Circuit, policy: CircuitPolicy, now: datetime) -> tuple[Bucket, ...]:
    """The buckets still inside the window ending `now`."""
    oldest = _epoch(now) - policy.window_seconds
    return tuple(b for b in circuit.buckets if b.start + policy.bucket_seconds > oldest)


def calls_in_window(circuit: Circuit, policy: CircuitPolicy, now: datetime) -> int:
    return sum(b.calls for b in window_buckets(circuit, policy, now))


def failure_rate(circuit: Circuit, policy: CircuitPolicy, now: datetime) -> Decimal:
    """Failures / calls in the window (0 without calls), to 4 places."""
    buckets = window_buckets(circuit, policy, now)
    calls = sum(b.calls for b in buckets)
    if calls == 0:
        return Decimal(0)
    return (Decimal(sum(b.failures for b in buckets)) / Decimal(calls)).quantize(Decimal("0.0001"))


def _count(buckets: tuple[Bucket, ...], policy: CircuitPolicy, now: datetime, ok: bool) -> tuple[Bucket, ...]:
    start = _epoch(now) // policy.bucket_seconds * policy.bucket_seconds
    fail = 0 if ok else 1
    if buckets and buckets[-1].start == start:
        last = buckets[-1]
        return (*buckets[:-1], Bucket(start, last.calls + 1, last.failures + fail))
    return (*buckets, Bucket(start, 1, fail))


def advance(circuit: Circuit, policy: CircuitPolicy, now: datetime) -> Applied:
    """The circuit as time alone leaves it: old buckets dropped; open past `retry_at` is half-open."""
    circuit = replace(circuit, buckets=window_buckets(circuit, policy, now))
    if circuit.state is CircuitState.OPEN and circuit.retry_at is not None and now >= circuit.retry_at:
        half = replace(
            circuit, state=CircuitState.HALF_OPEN, retry_at=None, probe_successes=0, probes_out=0, probes_expire=None
        )
        return Applied(
            half, [Transition(CircuitState.OPEN, CircuitState.HALF_OPEN, TransitionReason.OPEN_ELAPSED, now)]
        )
    return Applied(circuit)


def _open(circuit: Circuit, policy: CircuitPolicy, now: datetime, reason: TransitionReason, reopened: int) -> Applied:
    retry_at = now + policy.open_duration(reopened)
    opened = replace(
        circuit,
        state=CircuitState.OPEN,
        opened_at=now,
        retry_at=retry_at,
        reopened=reopened,
        probe_successes=0,
        probes_out=0,
        probes_expire=None,
    )
    return Applied(opened, [Transition(circuit.state, CircuitState.OPEN, reason, now, retry_at)])


def _trips(circuit: Circuit, policy: CircuitPolicy, now: datetime) -> TransitionReason | None:
    if circuit.consecutive_failures >= policy.failures_to_open:
        return TransitionReason.CONSECUTIVE_FAILURES
    buckets = window_buckets(circuit, policy, now)
    calls = sum(b.calls for b in buckets)
    failures = sum(b.failures for b in buckets)
    if calls >= policy.min_calls and Decimal(failures) >= policy.failure_rate * Decimal(calls):
        return TransitionReason.FAILURE_RATE
    return None


def on_outcomes(circuit: Circuit, policy: CircuitPolicy, outcomes: Sequence[bool], now: datetime) -> Applied:
    """The circuit after these call outcomes (True: the processor answered; False: it failed), in order, at `now`.

    While open, answers are counted but change nothing: they are late answers of calls sent before it opened.
    Half-open, each outcome is a probe's: a failure opens it again for longer, enough successes close it."""
    applied = advance(circuit, policy, now)
    circuit, transitions = applied.circuit, list(applied.transitions)
    for ok in outcomes:
        circuit = replace(
            circuit,
            buckets=_count(circuit.buckets, policy, now, ok),
            consecutive_failures=0 if ok else circuit.consecutive_failures + 1,
        )
        if circuit.state is CircuitState.CLOSED:
            reason = _trips(circuit, policy, now)
            if reason is not None:
                step = _open(circuit, policy, now, reason, reopened=0)
                circuit = step.circuit
                transitions += step.transitions
        elif circuit.state is CircuitState.HALF_OPEN:
            circuit = replace(circuit, probes_out=max(0, circuit.probes_out - 1))
            if not ok:
                step = _open(circuit, policy, now, TransitionReason.PROBE_FAILED, reopened=circuit.reopened + 1)
                circuit = step.circuit
                transitions += step.transitions
            elif circuit.probe_successes + 1 >= policy.successes_to_close:
                circuit = Circuit(state=CircuitState.CLOSED, buckets=())  # a fresh start: the old window is history
                transitions.append(
                    Transition(CircuitState.HALF_OPEN, CircuitState.CLOSED, TransitionReason.PROBE_SUCCEEDED, now)
                )
            else:
                circuit = replace(circuit, probe_successes=circuit.probe_successes + 1)
    return Applied(circuit, transitions)


def allows(circuit: Circuit, policy: CircuitPolicy, now: datetime) -> bool:
    """Whether new work may go to the processor now, before probe slots: closed, or due to probe."""
    state = advance(circuit, policy, now).circuit.state
    return state is not CircuitState.OPEN


def probe_free(circuit: Circuit, policy: CircuitPolicy, now: datetime) -> bool:
    """Half-open (or due to be) with a probe slot free now."""
    circuit = advance(circuit, policy, now).circuit
    if circuit.state is not CircuitState.HALF_OPEN:
        return False
    expired = circuit.probes_expire is None or now >= circuit.probes_expire
    return expired or circuit.probes_out < policy.half_open_probes


def grant_probe(circuit: Circuit, policy: CircuitPolicy, now: datetime) -> tuple[Applied, bool]:
    """Take one probe slot of a half-open circuit (it half-opens first if its open time is over). The slots
    granted count until `probe_seconds` after the last grant: a worker that died mid-probe frees its slot then."""
    applied = advance(circuit, policy, now)
    circuit = applied.circuit
    if circuit.state is not CircuitState.HALF_OPEN:
        return applied, False
    out = circuit.probes_out
    if circuit.probes_expire is None or now >= circuit.probes_expire:
        out = 0
    if out >= policy.half_open_probes:
        return applied, False
    granted = replace(circuit, probes_out=out + 1, probes_expire=now + timedelta(seconds=policy.probe_seconds))
    return Applied(granted, applied.transitions), True


def effective_state(circuit: Circuit, policy: CircuitPolicy, now: datetime) -> CircuitState:
    return advance(circuit, policy, now).circuit.state


def buckets_from(rows: Iterable[Sequence[int]]) -> tuple[Bucket, ...]:
    """Buckets from their stored form, `[[start, calls, failures], ...]`."""
    return tuple(Bucket(int(r[0]), int(r[1]), int(r[2])) for r in rows)


def buckets_to(buckets: Iterable[Bucket]) -> list[list[int]]:
    return [[b.start, b.calls, b.failures] for b in buckets]


@dataclass(frozen=True, slots=True)
class ProcessorHealthRecord:
    """A processor's (and account's) row of processor_health: its circuit and the operator's pause."""

    processor: str
    account: str
    circuit: Circuit
    paused: bool = False
    paused_reason: str | None = None
    paused_at: datetime | None = None
