"""The payment pump's calls to a processor, paced (TENDER_PROCESSOR_MAX_IN_FLIGHT), and the circuits it asks about
read once for a batch, not once per authorization (issue 16): real PostgreSQL, the simulator in process."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tender.domain.circuit import CircuitPolicy
from tender.domain.retry import RetryPolicy
from tender.processors.base import AuthorizeRequest, ProcessorResult
from tender.processors.simulator import SimulatorProcessor
from tender.services import processor_health
from tender.services.processor_health import CallOutcome, ProcessorHealth
from tender.worker.pumps import PaymentPump
from tests.support.payments import get, pay

pytestmark = pytest.mark.integration


class _Watched(SimulatorProcessor):
    """The simulator, each authorization held a moment, counting how many are in flight at once."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.in_flight = 0
        self.peak = 0
        self.calls = 0

    async def authorize(self, request: AuthorizeRequest) -> ProcessorResult:
        self.in_flight += 1
        self.calls += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return await super().authorize(request)
        finally:
            self.in_flight -= 1


async def test_a_batch_sends_at_most_max_in_flight_calls_at_once(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    watched = _Watched(simulator_url)
    health = ProcessorHealth(container.db, CircuitPolicy())
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0)
    pump = PaymentPump(
        container.db, container.vault, {"simulator": watched}, retry=policy, health=health, max_in_flight=3
    )
    try:
        while await pump.run_batch(100):  # anything an earlier test left due
            pass
        watched.calls = watched.peak = 0
        ids = [(await pay(api, merchant))["id"] for _ in range(10)]
        assert await pump.run_batch(100) == 10
    finally:
        await watched.aclose()
    assert watched.calls == 10 and watched.peak == 3
    assert {(await get(api, merchant, pid))["status"] for pid in ids} == {"succeeded"}


def test_max_in_flight_is_at_least_one(container: Any) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PaymentPump(container.db, container.vault, {}, max_in_flight=0)


async def test_a_batch_of_readers_shares_one_read_and_only_a_state_change_forgets_it(
    container: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"proc_{uuid.uuid4().hex[:8]}"
    policy = CircuitPolicy(failures_to_open=3, min_calls=100)
    health = ProcessorHealth(container.db, policy, refresh_seconds=60)
    reads = 0
    read = processor_health.store.read

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await read(*args, **kwargs)

    monkeypatch.setattr(processor_health.store, "read", counted)
    seen = await asyncio.gather(*(health.availability([name]) for _ in range(50)))
    assert reads == 1 and all(s[name].usable for s in seen)
    await health.record([CallOutcome(name, ok=False), CallOutcome(name, ok=True)])  # no state change
    assert (await health.availability([name]))[name].usable and reads == 1
    await health.record([CallOutcome(name, ok=False)] * 3)  # opens: this process sees it at once
    assert (await health.availability([name]))[name].reason == "open" and reads == 2
