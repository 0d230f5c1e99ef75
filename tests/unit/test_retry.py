"""domain/retry: the backoff schedule (both jitters) and the one policy's decision, retry at T or dead letter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tender.domain.retry import DeadLetter, Jitter, RetryAt, RetryPolicy, backoff_seconds

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _ceiling(tries: int, base: float, cap: float) -> float:
    return min(cap, base * 2.0 ** (tries - 1))


def delay(tries: int, *, base: float, cap: float) -> float:
    """The webhook pump's schedule: equal jitter."""
    return backoff_seconds(tries, base=base, cap=cap, jitter=Jitter.EQUAL)


# --- the schedule -------------------------------------------------------------------------------------


@given(
    tries=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0.5, max_value=60),
    cap=st.floats(min_value=60, max_value=86_400),
)
def test_equal_jitter_stays_within_its_bounds(tries: int, base: float, cap: float) -> None:
    ceiling = _ceiling(tries, base, cap)
    assert ceiling / 2 <= delay(tries, base=base, cap=cap) <= ceiling <= cap


@given(
    tries=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0.001, max_value=60),
    cap=st.floats(min_value=0.01, max_value=86_400),
)
def test_full_jitter_stays_within_its_bounds(tries: int, base: float, cap: float) -> None:
    assert 0 <= backoff_seconds(tries, base=base, cap=cap) <= _ceiling(tries, base, cap) <= cap


@given(tries=st.integers(min_value=1, max_value=60))
def test_equal_jitter_grows_until_the_cap(tries: int) -> None:
    base, cap = 5.0, 6 * 3600.0
    this, following = (delay(n, base=base, cap=cap) for n in (tries, tries + 1))
    if base * 2**tries <= cap:
        # The next ceiling is twice this one, so its lowest wait is this one's highest: never shorter.
        assert following >= this
    else:
        assert cap / 2 <= following <= cap


def test_first_delay_is_about_base() -> None:
    for _ in range(100):
        assert 2.5 <= delay(1, base=5.0, cap=3600.0) <= 5.0
        assert 0 <= backoff_seconds(1, base=5.0, cap=3600.0) <= 5.0


@pytest.mark.parametrize("jitter", list(Jitter))
def test_delays_are_jittered(jitter: Jitter) -> None:
    assert len({backoff_seconds(4, base=5.0, cap=3600.0, jitter=jitter) for _ in range(50)}) > 1


@pytest.mark.parametrize(
    ("jitter", "high", "factor"),
    [(Jitter.EQUAL, False, 0.5), (Jitter.EQUAL, True, 1.0), (Jitter.FULL, False, 0.0), (Jitter.FULL, True, 1.0)],
)
def test_jitter_extremes(monkeypatch: pytest.MonkeyPatch, jitter: Jitter, high: bool, factor: float) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: b if high else a)
    assert backoff_seconds(1, base=5.0, cap=60.0, jitter=jitter) == 5.0 * factor
    assert backoff_seconds(3, base=5.0, cap=60.0, jitter=jitter) == 20.0 * factor
    assert backoff_seconds(5, base=5.0, cap=60.0, jitter=jitter) == 60.0 * factor  # 80 capped at 60
    assert backoff_seconds(60, base=5.0, cap=60.0, jitter=jitter) == 60.0 * factor
    assert backoff_seconds(10_000, base=5.0, cap=60.0, jitter=jitter) == 60.0 * factor  # no overflow


# --- the decision -------------------------------------------------------------------------------------


def test_a_failure_within_its_tries_is_retried_after_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: b)
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0, max_tries=8)
    assert policy.after_failure(1, now=NOW) == RetryAt(NOW + timedelta(seconds=1))
    assert policy.after_failure(4, now=NOW) == RetryAt(NOW + timedelta(seconds=8))
    # After an unknown outcome the look-up waits a little longer, for the processor to know.
    assert policy.after_failure(4, now=NOW, extra_delay=1.5) == RetryAt(NOW + timedelta(seconds=9.5))
    assert policy.after_failure(7, now=NOW) == RetryAt(NOW + timedelta(seconds=64))


def test_the_last_try_opens_a_dead_letter_and_the_janitor_looks_again() -> None:
    policy = RetryPolicy(max_tries=8, janitor_seconds=600)
    assert policy.after_failure(8, now=NOW) == DeadLetter(NOW + timedelta(seconds=600))
    assert policy.after_failure(9, now=NOW) == DeadLetter(NOW + timedelta(seconds=600))
    assert not policy.out_of_tries(8) and policy.out_of_tries(9)  # the janitor's look-ups only


def test_work_with_nothing_to_look_up_stops() -> None:
    policy = RetryPolicy(max_tries=3, janitor_seconds=None)
    assert policy.after_failure(3, now=NOW) == DeadLetter(None)


def test_a_window_gives_up_once_the_next_try_would_fall_outside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: b)
    policy = RetryPolicy(
        base_seconds=5.0,
        cap_seconds=3600.0,
        jitter=Jitter.EQUAL,
        max_tries=None,
        give_up_after=timedelta(hours=1),
        janitor_seconds=None,
    )
    began = NOW - timedelta(minutes=59)
    assert policy.after_failure(1, now=NOW, began=began) == RetryAt(NOW + timedelta(seconds=5))
    assert policy.after_failure(5, now=NOW, began=began) == DeadLetter(None)  # 80 s later is past the hour
    assert policy.after_failure(100, now=NOW, began=NOW) == RetryAt(NOW + timedelta(hours=1))  # no try limit
    assert not policy.out_of_tries(10_000)


def test_the_webhook_pumps_policy_is_the_delivery_policys_window() -> None:
    """services/webhook_delivery: equal jitter between its base and cap, no try limit, given up (nothing to
    look up) once the next try would fall past `retry_for` of the event."""
    from tender.services.webhook_delivery import DeliveryPolicy

    policy = DeliveryPolicy(retry_base_seconds=2.0, retry_cap_seconds=60.0, retry_for=timedelta(hours=5))
    assert policy.retry == RetryPolicy(
        base_seconds=2.0,
        cap_seconds=60.0,
        jitter=Jitter.EQUAL,
        max_tries=None,
        give_up_after=timedelta(hours=5),
        janitor_seconds=None,
    )
