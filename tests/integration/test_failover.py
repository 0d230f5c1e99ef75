"""Safe failover in the payment pump: two real simulator processes as processors `a` and `b` of a payment's route,
real PostgreSQL, the pump in process. A payment moves from a to b only when a certainly did not charge (refused
the connection, answered "not processed", or its circuit is open or paused); a decline, a timeout or a lost
answer is settled at a by a look-up. The simulators' own records are the judge of what was charged where.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tender.domain.circuit import CircuitPolicy
from tender.domain.retry import RetryPolicy
from tender.processors.simulator import SimulatorProcessor
from tender.services import dead_letters, processor_health
from tender.services.payment_operations import PaymentSchedule
from tender.services.processor_health import CallOutcome, ProcessorHealth
from tender.store import claims
from tender.store.payments import PAYMENT_COLUMNS
from tender.worker.pumps import PaymentPump, RefundPump
from tests.support.payments import THREE_DS, drain, get, notification_for, pay
from tests.support.refunds import drain_refunds, refund
from tests.support.serve import free_port

pytestmark = pytest.mark.integration

DECLINED_CARD = "4000000000000002"


def _start_simulator(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tender.simulator", "--port", str(port), "--timeout-seconds", "3"]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            pytest.fail(f"simulator exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("simulator did not become healthy")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def sim_urls() -> Iterator[tuple[str, str]]:
    """Two simulator processes, each one acquirer."""
    ports = (free_port(), free_port())
    procs = [_start_simulator(port) for port in ports]
    try:
        yield (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Route:
    """Processors `a` and `b` under names of their own (each test's circuits are its own), and the pump."""

    a: str
    b: str
    a_url: str
    b_url: str
    pump: PaymentPump
    health: ProcessorHealth
    processors: dict[str, SimulatorProcessor]


FAULTS_OFF = {"error_rate": 0, "timeout_rate": 0, "drop_rate": 0, "drop_after_charge_share": 0.5, "latency_ms": 0}


def _pump(
    container: Any, processors: dict[str, Any], health: ProcessorHealth | None, max_tries: int = 8, **schedule: Any
) -> PaymentPump:
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0, max_tries=max_tries)
    return PaymentPump(
        container.db,
        container.vault,
        processors,
        lease_seconds=30,
        retry=policy,
        schedule=PaymentSchedule(**schedule),
        health=health,
    )


@pytest.fixture
async def route(container: Any, sim_urls: tuple[str, str]) -> AsyncIterator[Route]:
    tag = uuid.uuid4().hex[:6]
    a, b = f"a_{tag}", f"b_{tag}"
    processors = {
        a: SimulatorProcessor(sim_urls[0], timeout=1.0, name=a),
        b: SimulatorProcessor(sim_urls[1], timeout=1.0, name=b),
    }
    # Payments other tests left due still find their own processor.
    everything = {**container.processors, **processors}
    health = ProcessorHealth(container.db, CircuitPolicy(failures_to_open=3, open_seconds=2.0), refresh_seconds=0)
    yield Route(a, b, *sim_urls, _pump(container, everything, health), health, everything)
    for url in sim_urls:
        async with httpx.AsyncClient(base_url=url) as sim:
            assert (await sim.post("/_sim/config", json=FAULTS_OFF)).status_code == 200
    for p in {*processors.values(), *everything.values()} - set(container.processors.values()):
        await p.aclose()  # a test's stand-in for a or b too


async def routed(api: Any, container: Any, merchant: Any, route: list[str], number: str = "4242424242424242") -> str:
    """A payment accepted for `route` (as routing would have chosen it), due for the pump."""
    created = await pay(api, merchant, number)
    async with container.db.connection() as conn:
        await conn.execute(
            "UPDATE payments SET processor = %s, route = %s WHERE id = %s", (route[0], route, created["id"])
        )
    return str(created["id"])


async def attempts(container: Any, payment_id: str) -> list[dict[str, Any]]:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT processor, status, calls, maybe_sent, last_error FROM payment_attempts"
            " WHERE payment_id = %s AND operation = 'authorize' ORDER BY id",
            (payment_id,),
        )
        return list(await cur.fetchall())


async def charges(url: str, payment_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url) as sim:
        data: list[dict[str, Any]] = (await sim.get("/_sim/authorizations", params={"payment": payment_id})).json()[
            "data"
        ]
    return data


async def charged(url: str) -> int:
    async with httpx.AsyncClient(base_url=url) as sim:
        return int((await sim.get("/_sim/stats")).json()["charged"])


async def configure(url: str, **faults: Any) -> None:
    async with httpx.AsyncClient(base_url=url) as sim:
        assert (await sim.post("/_sim/config", json=faults)).status_code == 200


async def test_a_refused_connection_fails_over_to_the_next_processor(
    api: Any, container: Any, merchant: Any, route: Route
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the connection is refused
    route.processors[route.a] = SimulatorProcessor(closed, timeout=1.0, name=route.a)
    pump = _pump(container, route.processors, route.health)
    payment_id = await routed(api, container, merchant, [route.a, route.b])
    await drain(pump)
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["processor"]) == ("succeeded", route.b)
    history = await attempts(container, payment_id)
    assert [(h["processor"], h["status"], h["maybe_sent"]) for h in history] == [
        (route.a, "not_processed", False),
        (route.b, "approved", False),
    ]
    assert "refused" in history[0]["last_error"] or "before the request was sent" in history[0]["last_error"]
    assert len(await charges(route.b_url, payment_id)) == 1


async def test_an_explicit_not_processed_answer_fails_over(
    api: Any, container: Any, merchant: Any, route: Route
) -> None:
    await configure(route.a_url, error_rate=1.0)  # 503 "nothing was done"
    payment_id = await routed(api, container, merchant, [route.a, route.b])
    await drain(route.pump)
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["processor"]) == ("succeeded", route.b)
    assert await charges(route.a_url, payment_id) == []
    assert len(await charges(route.b_url, payment_id)) == 1


@pytest.mark.parametrize(
    "faults",
    [
        {"timeout_rate": 1.0, "timeout_seconds": 3.0},  # charged, then the answer comes after Tender gave up
        {"drop_rate": 1.0, "drop_after_charge_share": 1.0},  # charged, then the connection is cut
    ],
    ids=["timeout", "dropped-answer"],
)
async def test_a_charge_whose_answer_is_lost_is_looked_up_never_failed_over(
    api: Any, container: Any, merchant: Any, route: Route, faults: dict[str, float]
) -> None:
    """THE PROOF: the first processor charges and its answer is lost. The payment is settled by a look-up there;
    the second processor is never asked. One charge in all, never two."""
    await configure(route.a_url, **faults)
    a_before, b_before = await charged(route.a_url), await charged(route.b_url)
    payment_id = await routed(api, container, merchant, [route.a, route.b])
    await drain(route.pump)
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["processor"]) == ("succeeded", route.a)
    [charge] = await charges(route.a_url, payment_id)
    assert charge["status"] == "approved"
    assert await charges(route.b_url, payment_id) == []
    assert (await charged(route.a_url) - a_before, await charged(route.b_url) - b_before) == (1, 0)
    [attempt] = await attempts(container, payment_id)
    assert (attempt["processor"], attempt["status"], attempt["maybe_sent"]) == (route.a, "approved", True)


async def test_a_decline_never_reaches_the_next_processor(
    api: Any, container: Any, merchant: Any, route: Route
) -> None:
    payment_id = await routed(api, container, merchant, [route.a, route.b], DECLINED_CARD)
    await drain(route.pump)
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["failure_code"], p["processor"]) == ("failed", "card_declined", route.a)
    assert len(await charges(route.a_url, payment_id)) == 1
    assert await charges(route.b_url, payment_id) == []


async def test_an_open_circuit_routes_to_the_next_before_any_call(
    api: Any, container: Any, merchant: Any, route: Route
) -> None:
    await route.health.record([CallOutcome(route.a, ok=False)] * 3)  # a's circuit opens
    payment_id = await routed(api, container, merchant, [route.a, route.b])
    await drain(route.pump)
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["processor"]) == ("succeeded", route.b)
    history = await attempts(container, payment_id)
    assert [(h["processor"], h["status"], h["calls"]) for h in history] == [
        (route.a, "not_processed", 0),  # never sent
        (route.b, "approved", 1),
    ]
    assert await charges(route.a_url, payment_id) == []


async def test_a_paused_processor_is_skipped(api: Any, container: Any, merchant: Any, route: Route) -> None:
    await processor_health.set_paused(container.db, route.health.policy, route.a, paused=True, reason="test")
    payment_id = await routed(api, container, merchant, [route.a, route.b])
    await drain(route.pump)
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["processor"]) == ("succeeded", route.b)
    assert await charges(route.a_url, payment_id) == []


async def test_the_breaker_hears_of_every_call(api: Any, container: Any, merchant: Any, route: Route) -> None:
    await configure(route.a_url, error_rate=1.0)
    for _ in range(3):  # three refusals in a row open a's circuit (failures_to_open=3)
        await routed(api, container, merchant, [route.a, route.b])
    await drain(route.pump)
    [a, b] = await processor_health.statuses(container.db, route.health.policy, [route.a, route.b])
    assert (a.status, b.status) == ("open", "closed")


async def held_payment(api: Any, container: Any, merchant: Any, route: Route, pump: PaymentPump) -> str:
    payment_id = await routed(api, container, merchant, [route.a, route.b])
    await pump.run_batch(100)
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT status, tries, next_run_at FROM payments WHERE id = %s", (payment_id,))
        row = await cur.fetchone()
    assert (row["status"], row["tries"]) == ("processing", 0)  # held: no try spent
    assert row["next_run_at"] > datetime.now(UTC)
    [attempt] = await attempts(container, payment_id)
    assert (attempt["processor"], attempt["status"], attempt["calls"], attempt["maybe_sent"]) == (
        route.a,
        "pending",
        0,
        False,
    )
    return payment_id


async def test_all_open_holds_the_payment_until_one_half_opens(
    api: Any, container: Any, merchant: Any, route: Route
) -> None:
    await route.health.record([CallOutcome(route.a, ok=False)] * 3 + [CallOutcome(route.b, ok=False)] * 3)
    payment_id = await held_payment(api, container, merchant, route, route.pump)
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT next_run_at - now() AS wait FROM payments WHERE id = %s", (payment_id,))
        assert (await cur.fetchone())["wait"] <= timedelta(seconds=2.5)  # when the first circuit half-opens
    await asyncio.sleep(2.2)
    await drain(route.pump)
    p = await get(api, merchant, payment_id)
    assert p["status"] == "succeeded"
    assert len(await charges(route.a_url, payment_id)) + len(await charges(route.b_url, payment_id)) == 1


async def test_a_paused_route_resumed_goes_on(api: Any, container: Any, merchant: Any, route: Route) -> None:
    for name in (route.a, route.b):
        await processor_health.set_paused(container.db, route.health.policy, name, paused=True)
    payment_id = await held_payment(api, container, merchant, route, route.pump)
    await processor_health.set_paused(container.db, route.health.policy, route.b, paused=False)
    async with container.db.connection() as conn:
        await conn.execute("UPDATE payments SET next_run_at = now() WHERE id = %s", (payment_id,))
    await drain(route.pump)
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["processor"]) == ("succeeded", route.b)
    await processor_health.set_paused(container.db, route.health.policy, route.a, paused=False)


async def test_held_past_the_longest_hold_fails_processor_unavailable(
    api: Any, container: Any, merchant: Any, route: Route
) -> None:
    pump = _pump(container, route.processors, route.health, max_hold=timedelta(seconds=1))
    for name in (route.a, route.b):
        await processor_health.set_paused(container.db, route.health.policy, name, paused=True)
    payment_id = await held_payment(api, container, merchant, route, pump)
    await asyncio.sleep(1.1)
    await drain(pump)
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["failure_code"]) == ("failed", "processor_unavailable")
    assert "nothing was charged" in p["failure_message"]
    [attempt] = await attempts(container, payment_id)
    assert (attempt["status"], attempt["calls"]) == ("not_processed", 0)
    for url in (route.a_url, route.b_url):
        assert await charges(url, payment_id) == []
    for name in (route.a, route.b):
        await processor_health.set_paused(container.db, route.health.policy, name, paused=False)


async def test_a_dead_letter_names_the_processor(api: Any, container: Any, merchant: Any, route: Route) -> None:
    await configure(route.a_url, error_rate=1.0)
    pump = _pump(container, route.processors, None, max_tries=2)
    payment_id = await routed(api, container, merchant, [route.a])  # nowhere else to go: retried, then a letter
    await drain(pump)
    letters, _ = await dead_letters.list_dead_letters(container.db, status="open", limit=100)
    [letter] = [d for d in letters if d["object_id"] == payment_id]
    assert (letter["operation"], letter["processor"]) == ("authorize", route.a)
    assert [h["processor"] for h in letter["history"]] == [route.a]


async def test_an_instance_notifies_on_its_own_webhook(api: Any, container: Any, merchant: Any, route: Route) -> None:
    """A payment failed over to `b` and waiting for the shopper there is completed by b's notification on
    /webhooks/{b} (the extra simulator instances sign with the simulator's notify secret)."""
    closed = f"http://127.0.0.1:{free_port()}"
    route.processors[route.a] = SimulatorProcessor(closed, timeout=1.0, name=route.a)
    pump = _pump(container, route.processors, route.health)
    payment_id = await routed(api, container, merchant, [route.a, route.b], THREE_DS)
    await drain(pump)
    assert (await get(api, merchant, payment_id))["status"] == "requires_action"
    attempt = (await attempts(container, payment_id))[-1]
    reference = await attempt_id(container, payment_id, route.b)
    body, headers = await notification_for(route.b_url, reference, status="approved")
    assert (await api.post("/webhooks/nosuchsim", content=body, headers=headers)).status_code == 404
    container.processors[route.a] = route.processors[route.a]
    container.processors[route.b] = route.processors[route.b]
    try:
        # Signed alike, but a's webhook cannot speak for an attempt that went to b.
        wrong = await api.post(f"/webhooks/{route.a}", content=body, headers=headers)
        assert (wrong.status_code, wrong.json()["outcome"]) == (200, "wrong_processor")
        assert (await get(api, merchant, payment_id))["status"] == "requires_action"
        r = await api.post(f"/webhooks/{route.b}", content=body, headers=headers)
    finally:
        del container.processors[route.a]
        del container.processors[route.b]
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "applied"
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["processor"], attempt["processor"]) == ("succeeded", route.b, route.b)


async def attempt_id(container: Any, payment_id: str, processor: str) -> str:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM payment_attempts WHERE payment_id = %s AND processor = %s AND operation = 'authorize'",
            (payment_id, processor),
        )
        row = await cur.fetchone()
    assert row is not None
    return str(row["id"])


async def test_the_refund_pump_tells_the_breaker_too(api: Any, container: Any, merchant: Any, route: Route) -> None:
    payment_id = await routed(api, container, merchant, [route.b])
    await drain(route.pump)
    assert (await get(api, merchant, payment_id))["status"] == "succeeded"
    [before] = await processor_health.statuses(container.db, route.health.policy, [route.b])
    assert (await refund(api, merchant, {"payment": payment_id})).status_code < 300
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0)
    refunder = RefundPump(container.db, route.processors, lease_seconds=30, retry=policy, health=route.health)
    await drain_refunds(refunder)
    [after] = await processor_health.statuses(container.db, route.health.policy, [route.b])
    assert after.calls_in_window == before.calls_in_window + 1  # the refund's one call, an answer
    assert after.consecutive_failures == 0


async def test_a_call_cut_by_a_dying_worker_is_never_failed_over(
    api: Any, container: Any, merchant: Any, route: Route
) -> None:
    """A worker claims the payment, writes the attempt (marked maybe sent) and dies with the call in flight.
    Whatever the first processor says afterwards (here: nothing, it refuses connections), the payment is only
    looked up there: the call may have charged, so it never goes to the second."""
    payment_id = await routed(api, container, merchant, [route.a, route.b])
    async with container.db.transaction() as conn:  # the dead worker's claim: committed, never written back
        claim = await claims.claim_due(conn, "payments", columns=PAYMENT_COLUMNS, limit=1000, lease_seconds=30)
        await route.pump.operations.prepare(conn, [r for r in claim.rows if r["id"] == payment_id])
    [attempt] = await attempts(container, payment_id)
    assert (attempt["status"], attempt["maybe_sent"]) == ("pending", True)
    closed = f"http://127.0.0.1:{free_port()}"
    route.processors[route.a] = SimulatorProcessor(closed, timeout=1.0, name=route.a)
    async with container.db.connection() as conn:  # its lease runs out
        await conn.execute("UPDATE payments SET next_run_at = now() WHERE id = %s", (payment_id,))
    await drain(_pump(container, route.processors, None, max_tries=3))
    p = await get(api, merchant, payment_id)
    assert (p["status"], p["processor"]) == ("processing", route.a)
    [attempt] = await attempts(container, payment_id)
    assert (attempt["processor"], attempt["status"], attempt["maybe_sent"]) == (route.a, "pending", True)
    assert await charges(route.b_url, payment_id) == []


async def test_two_refusing_processors_take_turns_with_back_off_then_a_dead_letter(
    api: Any, container: Any, merchant: Any, route: Route
) -> None:
    """Without a breaker, a route whose processors all refuse goes round with back-off and ends in a dead letter
    (never spinning, never charging): a at once to b, b to a after a back-off, ..."""
    for name in (route.a, route.b):
        route.processors[name] = SimulatorProcessor(f"http://127.0.0.1:{free_port()}", timeout=1.0, name=name)
    payment_id = await routed(api, container, merchant, [route.a, route.b])
    await drain(_pump(container, route.processors, None, max_tries=4))
    history = await attempts(container, payment_id)
    assert [(h["processor"], h["status"]) for h in history] == [
        (route.a, "not_processed"),
        (route.b, "not_processed"),
        (route.a, "not_processed"),
        (route.b, "pending"),  # out of tries here: looked up by the janitor until an operator retries
    ]
    assert not any(h["maybe_sent"] for h in history)
    letters, _ = await dead_letters.list_dead_letters(container.db, status="open", limit=100)
    assert [d["processor"] for d in letters if d["object_id"] == payment_id] == [route.b]
