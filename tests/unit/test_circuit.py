"""domain/circuit: every transition of the breaker, table-driven, and the window and probe rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tender.domain.circuit import (
    Circuit,
    CircuitPolicy,
    CircuitState,
    TransitionReason,
    allows,
    calls_in_window,
    effective_state,
    failure_rate,
    grant_probe,
    on_outcomes,
    probe_free,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = CircuitPolicy(failures_to_open=5, failure_rate=Decimal("0.5"), window_seconds=60, min_calls=20,
                       open_seconds=30, max_open_seconds=240)  # fmt: skip
OK, FAIL = True, False
CLOSED, OPEN, HALF = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def _open(at: datetime = T0, reopened: int = 0) -> Circuit:
    return Circuit(state=OPEN, opened_at=at, retry_at=at + POLICY.open_duration(reopened), reopened=reopened)


def _half(successes: int = 0) -> Circuit:
    expire = T0 + timedelta(seconds=30)
    return Circuit(state=HALF, reopened=1, probe_successes=successes, probes_out=1, probes_expire=expire)


@pytest.mark.parametrize(
    ("circuit", "outcomes", "state", "reasons"),
    [
        (Circuit(), [FAIL] * 4, CLOSED, []),  # one short of N in a row
        (Circuit(), [FAIL] * 5, OPEN, [TransitionReason.CONSECUTIVE_FAILURES]),
        (Circuit(consecutive_failures=4), [FAIL], OPEN, [TransitionReason.CONSECUTIVE_FAILURES]),
        (Circuit(), [FAIL] * 4 + [OK] + [FAIL] * 4, CLOSED, []),  # an answer resets the count
        (Circuit(), [OK, FAIL] * 9 + [OK], CLOSED, []),  # 9 of 19: under min_calls and under the rate
        (Circuit(), [OK, FAIL] * 10, OPEN, [TransitionReason.FAILURE_RATE]),  # 10 of 20 = 50 %
        (Circuit(), [OK, OK, FAIL] * 10, CLOSED, []),  # 33 %
        (Circuit(), [FAIL] * 7, OPEN, [TransitionReason.CONSECUTIVE_FAILURES]),  # opens once, not twice
        (_open(), [OK, OK, OK], OPEN, []),  # late answers of calls sent before it opened change nothing
        (_open(), [FAIL], OPEN, []),
        (_half(), [OK], CLOSED, [TransitionReason.PROBE_SUCCEEDED]),
        (_half(), [FAIL], OPEN, [TransitionReason.PROBE_FAILED]),
        (_half(), [OK, FAIL], CLOSED, [TransitionReason.PROBE_SUCCEEDED]),  # closed: one failure is just counted
    ],
)
def test_outcomes(circuit: Circuit, outcomes: list[bool], state: CircuitState, reasons: list[TransitionReason]) -> None:
    applied = on_outcomes(circuit, POLICY, outcomes, T0)
    assert applied.circuit.state is state
    assert [t.reason for t in applied.transitions] == reasons


def test_opening_sets_when_it_half_opens() -> None:
    applied = on_outcomes(Circuit(), POLICY, [FAIL] * 5, T0)
    assert applied.circuit.opened_at == T0 and applied.circuit.retry_at == T0 + timedelta(seconds=30)
    (t,) = applied.transitions
    assert (t.old, t.new, t.retry_at) == (CLOSED, OPEN, T0 + timedelta(seconds=30))


@pytest.mark.parametrize(
    ("seconds", "state", "allowed"),
    [(0, OPEN, False), (29.9, OPEN, False), (30, HALF, True), (3600, HALF, True)],
)
def test_open_half_opens_after_open_seconds(seconds: float, state: CircuitState, allowed: bool) -> None:
    now = T0 + timedelta(seconds=seconds)
    assert effective_state(_open(), POLICY, now) is state
    assert allows(_open(), POLICY, now) is allowed


def test_outcomes_after_the_open_time_are_probes() -> None:
    applied = on_outcomes(_open(), POLICY, [OK], T0 + timedelta(seconds=31))
    assert applied.circuit.state is CLOSED
    assert [(t.old, t.new) for t in applied.transitions] == [(OPEN, HALF), (HALF, CLOSED)]


def test_a_failed_probe_opens_for_twice_as_long_up_to_the_cap() -> None:
    circuit, now, durations = _open(), T0, []
    for _ in range(6):
        now = circuit.retry_at or now
        circuit = on_outcomes(circuit, POLICY, [FAIL], now).circuit
        assert circuit.state is OPEN and circuit.retry_at is not None
        durations.append((circuit.retry_at - now).total_seconds())
    assert durations == [60, 120, 240, 240, 240, 240]
    closed = on_outcomes(circuit, POLICY, [OK], circuit.retry_at or now).circuit
    assert closed == Circuit()  # closing forgets everything: the next opening is 30 s again


def test_successes_to_close() -> None:
    policy = replace(POLICY, successes_to_close=2)
    one = on_outcomes(_half(), policy, [OK], T0)
    assert one.circuit.state is HALF and one.circuit.probe_successes == 1 and one.transitions == []
    assert on_outcomes(one.circuit, policy, [OK], T0).circuit.state is CLOSED


def test_probe_slots_are_limited_and_expire() -> None:
    due = T0 + timedelta(seconds=30)
    applied, granted = grant_probe(_open(), POLICY, due)
    assert granted and applied.circuit.state is HALF and applied.circuit.probes_out == 1
    assert [(t.old, t.new) for t in applied.transitions] == [(OPEN, HALF)]
    assert not probe_free(applied.circuit, POLICY, due)
    again, granted = grant_probe(applied.circuit, POLICY, due)
    assert not granted and again.circuit == applied.circuit and again.transitions == []
    later = due + timedelta(seconds=POLICY.probe_seconds)  # the prober died: its slot frees
    assert probe_free(applied.circuit, POLICY, later)
    assert grant_probe(applied.circuit, POLICY, later)[1]
    assert not grant_probe(Circuit(), POLICY, T0)[1]  # closed: no probe needed
    assert not grant_probe(_open(), POLICY, T0)[1]  # open: not yet


def test_two_probe_slots() -> None:
    policy = replace(POLICY, half_open_probes=2)
    circuit = _open()
    due = T0 + timedelta(seconds=30)
    grants = []
    for _ in range(3):
        applied, granted = grant_probe(circuit, policy, due)
        circuit = applied.circuit
        grants.append(granted)
    assert grants == [True, True, False]
    failed = on_outcomes(circuit, policy, [FAIL], due).circuit  # either probe failing opens it again
    assert failed.state is OPEN and failed.reopened == 1
    assert on_outcomes(circuit, policy, [OK], due).circuit.state is CLOSED  # successes_to_close = 1


def test_the_window_forgets_old_calls() -> None:
    circuit = on_outcomes(Circuit(), POLICY, [OK, FAIL, OK, FAIL], T0).circuit
    assert calls_in_window(circuit, POLICY, T0) == 4 and failure_rate(circuit, POLICY, T0) == Decimal("0.5")
    later = T0 + timedelta(seconds=POLICY.window_seconds + POLICY.bucket_seconds)
    assert calls_in_window(circuit, POLICY, later) == 0 and failure_rate(circuit, POLICY, later) == 0
    # 19 failures long ago and 1 now are not a rate of 20 calls
    old = on_outcomes(Circuit(), POLICY, [FAIL, OK] * 9 + [OK], T0).circuit
    assert on_outcomes(old, POLICY, [FAIL], later).circuit.state is CLOSED


def test_the_window_is_bounded() -> None:
    circuit = Circuit()
    for second in range(0, 600, 3):
        circuit = on_outcomes(circuit, POLICY, [OK], T0 + timedelta(seconds=second)).circuit
    assert len(circuit.buckets) <= 7


@pytest.mark.parametrize(
    "kwargs",
    [{"failures_to_open": 0}, {"failure_rate": Decimal(0)}, {"failure_rate": Decimal("1.5")}, {"min_calls": 0},
     {"open_seconds": 0}, {"max_open_seconds": 10}, {"half_open_probes": 0}, {"successes_to_close": 0}],
)  # fmt: skip
def test_a_policy_refuses_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"at least|in|open_seconds"):
        CircuitPolicy(**kwargs)  # type: ignore[arg-type]
