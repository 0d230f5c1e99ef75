"""When failed work runs again, or stops for an operator: the one retry policy of every pump. No I/O.

A try that failed (a processor's transient error or unknown outcome, a webhook endpoint's non-2xx, a bug) is
retried after an exponential backoff with jitter, so a burst of failures comes back spread out. When the
work has had `max_tries` tries, or its next try would fall past `give_up_after` from when it began, it is
out of retries: a dead letter for an operator. Work whose earlier call may still land at the processor is
then only looked up, on the slow `janitor_seconds` schedule, never re-sent on its own; work that has
nothing to look up (a webhook delivery) just stops (`DeadLetter.look_again_at` is None).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

_MAX_DOUBLINGS = 64  # past 2**64 every cap is reached; an int power that large would overflow a float


class Jitter(StrEnum):
    # Anywhere from 0 to the ceiling (AWS architecture blog's "full jitter"): spreads a burst furthest apart.
    FULL = "full"
    # Half the ceiling fixed, half random ("equal jitter"): spread out, yet never back at once.
    EQUAL = "equal"


def backoff_seconds(tries: int, *, base: float, cap: float, jitter: Jitter = Jitter.FULL) -> float:
    """The wait after the `tries`-th failed try (1-based): a ceiling doubling from `base` up to `cap`, jittered."""
    ceiling = min(cap, base * 2.0 ** min(max(tries - 1, 0), _MAX_DOUBLINGS))
    if jitter is Jitter.EQUAL:
        return ceiling / 2 + random.uniform(0, ceiling / 2)
    return random.uniform(0, ceiling)


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at `when`."""

    when: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Out of retries: an operator decides. Meanwhile the work is looked up at `look_again_at` (a call sent
    earlier may still land), or, when None, it stops."""

    look_again_at: datetime | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    jitter: Jitter = Jitter.FULL
    # After an unknown outcome, look the attempt up soon: the processor has usually answered by then.
    lookup_delay_seconds: float = 1.0
    max_tries: int | None = 8  # None: no limit on tries (see give_up_after)
    # Out of retries once the next try would fall this long after the work began (None: no such window).
    give_up_after: timedelta | None = None
    # Work that may have reached the processor, out of retries: looked up this often until it answers
    # (None: work that has nothing to look up stops).
    janitor_seconds: float | None = 600.0

    def after_failure(
        self, tries: int, *, now: datetime, extra_delay: float = 0.0, began: datetime | None = None
    ) -> RetryAt | DeadLetter:
        """What follows the `tries`-th failed try, decided `now`: `extra_delay` seconds are added to the backoff
        (after an unknown outcome, time for the processor to know); `began` is when the work began (give_up_after)."""
        if self.max_tries is not None and tries >= self.max_tries:
            return self._dead_letter(now)
        delay = extra_delay + backoff_seconds(tries, base=self.base_seconds, cap=self.cap_seconds, jitter=self.jitter)
        when = now + timedelta(seconds=delay)
        if self.give_up_after is not None and began is not None and when > began + self.give_up_after:
            return self._dead_letter(now)
        return RetryAt(when)

    def out_of_tries(self, tries: int) -> bool:
        """Past its tries (a dead letter's work, looked up by the janitor): only look up, until an operator
        retries; never send again on its own."""
        return self.max_tries is not None and tries > self.max_tries

    def _dead_letter(self, now: datetime) -> DeadLetter:
        if self.janitor_seconds is None:
            return DeadLetter(None)
        return DeadLetter(now + timedelta(seconds=self.janitor_seconds))
