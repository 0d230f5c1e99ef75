"""The worker's calls to a processor, paced (TENDER_PROCESSOR_MAX_IN_FLIGHT; payments' and refunds' under one limit),
and the circuits it asks about read once for a batch, not once per authorization (issue 16): real PostgreSQL, the
simulator served on a loopback port."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import pytest

from tender.domain.circuit import CircuitPolicy
from tender.domain.retry import RetryPolicy
from tender.processors.base import AuthorizeRequest, ProcessorResult
from tender.processors.simulator import SimulatorProcessor
from tender.services import processor_health
from tender.services.pacing import Pacing
from tender.services.processor_health import CallOutcome, ProcessorHealth
from tender.worker.pumps import PaymentPump, RefundPump
from tests.support.api import auth
from tests.support.payments import authorizer, drain, get, pay
from tests.support.refunds import refund

pytestmark = pytest.mark.integration


class _Watched(SimulatorProcessor):
    """The simulator, each authorization and refund held a moment, counting how many are in flight at once."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.in_flight = 0
        self.peak = 0
        self.calls: list[str] = []

    async def _held(self, kind: str, call: Awaitable[ProcessorResult]) -> ProcessorResult:
        self.in_flight += 1
        self.calls.append(kind)
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return await call
        finally:
            self.in_flight -= 1

    async def authorize(self, request: AuthorizeRequest) -> ProcessorResult:
        return await self._held("authorize", super().authorize(request))

    async def refund(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult:
        return await self._held("refund", super().refund(reference, authorization, amount))


async def test_a_batch_sends_at_most_max_in_flight_calls_at_once(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    watched = _Watched(simulator_url)
    health = ProcessorHealth(container.db, CircuitPolicy())
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0)
    pump = PaymentPump(
        container.db, container.vault, {"simulator": watched}, retry=policy, health=health, pacing=Pacing(3)
    )
    try:
        while await pump.run_batch(100):  # anything an earlier test left due
            pass
        watched.calls, watched.peak = [], 0
        ids = [(await pay(api, merchant))["id"] for _ in range(10)]
        assert await pump.run_batch(100) == 10
    finally:
        await watched.aclose()
    assert watched.calls == ["authorize"] * 10 and watched.peak == 3
    assert {(await get(api, merchant, pid))["status"] for pid in ids} == {"succeeded"}


async def test_refunds_and_authorizations_to_one_processor_share_the_limit(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    captured = [(await pay(api, merchant))["id"] for _ in range(6)]
    await drain(authorizer(container))
    watched = _Watched(simulator_url)
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0)
    pacing = Pacing(3)  # one per worker process, as worker/runner.py shares it
    payments = PaymentPump(container.db, container.vault, {"simulator": watched}, retry=policy, pacing=pacing)
    refunds = RefundPump(container.db, {"simulator": watched}, retry=policy, pacing=pacing)
    try:
        while await payments.run_batch(100) + await refunds.run_batch(100):  # anything an earlier test left due
            pass
        watched.calls, watched.peak = [], 0
        refund_ids = [(await refund(api, merchant, {"payment": pid})).json()["id"] for pid in captured]
        new = [(await pay(api, merchant))["id"] for _ in range(6)]
        assert list(await asyncio.gather(payments.run_batch(100), refunds.run_batch(100))) == [6, 6]
    finally:
        await watched.aclose()
    assert sorted(watched.calls) == ["authorize"] * 6 + ["refund"] * 6
    assert watched.peak == 3  # not 3 of each: the two pumps queue behind one limit
    assert {(await get(api, merchant, pid))["status"] for pid in new} == {"succeeded"}
    for refund_id in refund_ids:
        r = await api.get(f"/v1/refunds/{refund_id}", headers=auth(merchant.secret_key))
        assert r.json()["status"] == "succeeded"


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
