"""Processor health against real PostgreSQL (issue 14 items 3 and 4): circuits shared by processes (two
ProcessorHealth instances stand for two workers), the half-open probe limit, operator events, pause and resume
through the API and the CLI, GET /admin/v1/processors, GET /admin/v1/events and the /metrics gauges."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest

from tender.domain.circuit import CircuitPolicy
from tender.services.processor_health import Availability, CallOutcome, ProcessorHealth

pytestmark = pytest.mark.integration

FAST = CircuitPolicy(failures_to_open=3, min_calls=10, failure_rate=Decimal("0.5"), open_seconds=0.3)


def _name() -> str:
    return f"proc_{uuid.uuid4().hex[:8]}"  # each test its own processors: the database is shared by the session


async def _events(container: Any, processor: str) -> list[str]:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT type FROM operator_events WHERE data->>'processor' = %s ORDER BY id", (processor,)
        )
        return [r["type"] for r in await cur.fetchall()]


async def test_failures_in_a_row_open_the_circuit_for_every_worker(container: Any) -> None:
    name, other = _name(), _name()
    one = ProcessorHealth(container.db, FAST, refresh_seconds=60)
    two = ProcessorHealth(container.db, FAST, refresh_seconds=0)
    assert (await two.availability([name, other]))[name].usable  # never called: closed
    await one.record([CallOutcome(name, ok=False), CallOutcome(name, ok=False), CallOutcome(other, ok=True)])
    assert (await two.availability([name]))[name].usable  # two failures of three
    await one.record([CallOutcome(name, ok=False)])
    seen = await two.availability([name, other])
    assert not seen[name].usable and seen[name].reason == "open" and seen[name].retry_at is not None
    assert seen[other].usable and seen[other].reason is None
    assert (await one.availability([name]))[name].reason == "open"  # the recorder forgot its cache
    assert await _events(container, name) == ["processor.circuit_opened"]
    assert await _events(container, other) == []


async def test_an_answer_resets_the_count(container: Any) -> None:
    name = _name()
    health = ProcessorHealth(container.db, FAST, refresh_seconds=0)
    await health.record([CallOutcome(name, ok=False), CallOutcome(name, ok=False), CallOutcome(name, ok=True)])
    await health.record([CallOutcome(name, ok=False), CallOutcome(name, ok=False)])
    assert (await health.availability([name]))[name].usable


async def test_half_open_grants_one_probe_across_workers_and_a_success_closes(container: Any) -> None:
    name = _name()
    workers = [ProcessorHealth(container.db, FAST, refresh_seconds=0) for _ in range(4)]
    await workers[0].record([CallOutcome(name, ok=False)] * 3)
    await asyncio.sleep(0.35)
    answers = await asyncio.gather(*(w.availability([name]) for w in workers))
    probes = [a[name] for a in answers if a[name].usable]
    assert len(probes) == 1 and probes[0].probe  # one probe slot for all four
    assert all(a[name].reason == "open" for a in answers if not a[name].usable)
    await workers[1].record([CallOutcome(name, ok=True)])
    for w in workers:
        assert (await w.availability([name]))[name] == Availability(name, True, None, None)
    assert await _events(container, name) == [
        "processor.circuit_opened",
        "processor.circuit_half_opened",
        "processor.circuit_closed",
    ]


async def test_a_failed_probe_opens_again_for_longer(container: Any) -> None:
    name = _name()
    health = ProcessorHealth(container.db, FAST, refresh_seconds=0)
    await health.record([CallOutcome(name, ok=False)] * 3)
    first = (await health.availability([name]))[name].retry_at
    await asyncio.sleep(0.35)
    assert (await health.availability([name]))[name].probe
    await health.record([CallOutcome(name, ok=False)])
    again = (await health.availability([name]))[name]
    assert not again.usable and again.reason == "open"
    assert first is not None and again.retry_at is not None and again.retry_at - first > FAST.open_duration(0)
    assert (await _events(container, name))[-1] == "processor.circuit_opened"


async def test_the_failure_rate_opens_it(container: Any) -> None:
    name = _name()
    health = ProcessorHealth(container.db, FAST, refresh_seconds=0)
    await health.record([CallOutcome(name, ok=i % 2 == 0) for i in range(9)])  # 4 of 9 failed, under min_calls
    assert (await health.availability([name]))[name].usable
    await health.record([CallOutcome(name, ok=False)])  # 5 of 10
    assert (await health.availability([name]))[name].reason == "open"


async def test_accounts_have_their_own_circuits(container: Any) -> None:
    name = _name()
    health = ProcessorHealth(container.db, FAST, refresh_seconds=0)
    await health.record([CallOutcome(name, ok=False, account="pa_one")] * 3)
    assert not (await health.availability([name], account="pa_one"))[name].usable
    assert (await health.availability([name], account="pa_two"))[name].usable
    assert (await health.availability([name]))[name].usable
