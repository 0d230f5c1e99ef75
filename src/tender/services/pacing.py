"""The worker's calls to processors: how many to one processor it keeps in flight, and what the breaker hears.

A pump's batch would otherwise send all its calls at once (100 authorizations, or 100 refunds, as one burst),
and a processor answering some of them only after our timeout would see its circuit opened by our own burst
(issue 16). One `Pacing` is shared by a worker's pumps, so a burst of refunds, a batch of authorizations and the
expiry pump's Stripe Checkout look-ups to the same processor queue behind the same limit
(TENDER_PROCESSOR_MAX_IN_FLIGHT). `ProcessorCalls` is one pump's side of it: each call paced, and its outcome
noted for the circuit breaker, told after the batch's write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tender.processors.base import Outcome, ProcessorResult
from tender.services.processor_health import CallOutcome, ProcessorHealth

DEFAULT_MAX_IN_FLIGHT = 32  # config.py's processor_max_in_flight default

T = TypeVar("T")


class Pacing:
    """At most `max_in_flight` calls to one processor at a time in this process (one event loop)."""

    def __init__(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self._slots: dict[str, asyncio.Semaphore] = {}  # by processor name

    async def call(self, processor: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` once a slot for `processor` is free. The wait is not timed: the lease is renewed meanwhile
        (worker/pump.py `held`), and the call's own timeouts start when it leaves."""
        slots = self._slots.get(processor)
        if slots is None:
            slots = self._slots[processor] = asyncio.Semaphore(self.max_in_flight)
        async with slots:
            return await call()


class ProcessorCalls:
    """One pump's calls to processors: paced by the worker's `Pacing`, each outcome noted for the circuit breaker
    (`health`; None: nothing to tell) until `report`."""

    def __init__(self, pacing: Pacing | None = None, health: ProcessorHealth | None = None) -> None:
        self._pacing = pacing or Pacing()
        self._health = health
        self._outcomes: list[CallOutcome] = []  # not yet reported to the breaker

    async def call(self, processor: str, call: Callable[[], Awaitable[ProcessorResult]]) -> ProcessorResult:
        """One call to `processor`, paced and noted: no answer (TRANSIENT, UNKNOWN) counts as a failure."""
        result = await self._pacing.call(processor, call)
        self._outcomes.append(CallOutcome(processor, result.outcome not in (Outcome.TRANSIENT, Outcome.UNKNOWN)))
        return result

    async def report(self) -> None:
        """Tell the breaker how the calls since the last report went (after their batch's write, in a transaction
        of its own; it never raises)."""
        outcomes, self._outcomes = self._outcomes, []
        if outcomes and self._health is not None:
            await self._health.record(outcomes)
