"""End to end: routing, failover and the circuit breaker with real processes: two simulators (`simulator` and
`simulator_b`, TENDER_SIMULATOR_INSTANCES), localstripe, the API and a worker, over HTTP.

Failover is safe only when the processor certainly charged nothing: a stopped processor (connection refused)
and an explicit "not processed" (503) move a payment to the next processor; a charge whose answer is lost (a
timeout, a cut connection) is looked up at the same processor and never sent to another; with no other
processor in its route a payment waits for its own. Routing rules pick the route (currency, card brand, amount,
a split); an open circuit or a pause skips a processor, and the operator sees it (GET /admin/v1/processors,
operator events, /metrics). The simulators' own records are the judge: each payment charged once, at the
processor it names.

The circuits are shared by every test here (one stack): before each test a fixture turns the simulators' faults
off and brings every circuit back to closed with no failure counted (`healed`: a forced payment is the probe).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.processors import (
    Processors,
    card,
    charges_by_payment,
    create_merchant,
    merchant_client,
    pay,
    pay_and_wait,
    processor_action,
    processor_states,
    running_processors,
    set_routing,
    wait_final,
    wait_for_state,
)

pytestmark = pytest.mark.e2e

FAILURES_TO_OPEN = 3
OPEN_SECONDS = 2
ENV = {
    "TENDER_PROCESSOR_TIMEOUT_SECONDS": "1",
    "TENDER_WORKER_LEASE_SECONDS": "5",
    "TENDER_WORKER_RETRY_BASE_SECONDS": "0.2",
    "TENDER_WORKER_RETRY_CAP_SECONDS": "1",
    "TENDER_WORKER_POLL_SECONDS": "0.5",
    "TENDER_CIRCUIT_FAILURES": str(FAILURES_TO_OPEN),
    "TENDER_CIRCUIT_OPEN_SECONDS": str(OPEN_SECONDS),
    "TENDER_CIRCUIT_MIN_CALLS": "1000",  # only failures in a row open a circuit here: predictable counts
    "LOG_LEVEL": "INFO",
}
# Each process reads the circuits and pauses through a cache refreshed every second (services/processor_health.py).
HEALTH_REFRESH_SECONDS = 1.2
KNOBS_OFF = {
    "error_rate": 0.0,
    "timeout_rate": 0.0,
    "drop_rate": 0.0,
    "drop_after_charge_share": 0.5,
    "notify_on_create": True,
}


@pytest.fixture(scope="module")
def processors(tender_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processors]:
    logs = tmp_path_factory.mktemp("routing-e2e")
    sims: dict[str, list[str]] = {"simulator": [], "simulator_b": []}
    with running_processors(tender_env, logs, simulators=sims, stripe=True, env=ENV, workers=1) as p:
        yield p
    print(f"routing e2e logs: {logs}")


@pytest.fixture(scope="module")
async def operator_shop(processors: Processors) -> dict[str, Any]:
    """A merchant whose forced payments probe a half-open circuit back to closed between tests."""
    return await create_merchant(processors, "Routing operator shop")


def settled(state: dict[str, Any]) -> bool:
    return bool(state["status"] == "closed" and state["consecutive_failures"] == 0)


async def healed(p: Processors, shop: dict[str, Any], *names: str, within: float = 30) -> None:
    """Every named circuit closed with no failure counted: wait out `open`, then a payment forced to the processor
    is the half-open probe (or, closed, clears the failures in a row a test left behind)."""
    deadline = time.monotonic() + within
    async with p.admin() as admin, merchant_client(p, shop) as client:
        for name in names:
            while not settled(state := (await processor_states(admin))[name]):
                assert time.monotonic() < deadline, f"{name} not closed after {within} s: {state}"
                if state["status"] == "open":
                    await asyncio.sleep(0.2)
                else:
                    await pay_and_wait(client, amount=100, processor=name)


@pytest.fixture(autouse=True)
async def closed_circuits(processors: Processors, operator_shop: dict[str, Any]) -> None:
    """Each test starts with every simulator answering normally and every circuit closed and unpaused."""
    for sim in processors.simulators.values():
        if sim.running:
            await sim.configure(**KNOBS_OFF)
    names = [n for n, s in processors.simulators.items() if s.running]
    await healed(processors, operator_shop, *names)
    async with processors.admin() as admin:
        states = await processor_states(admin)
    assert all(not states[n]["paused"] for n in names), states


async def routed_shop(p: Processors, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    shop = await create_merchant(p, name)
    saved = await set_routing(p, shop["id"], rules)
    assert saved["rules"][0]["processors"] == rules[0]["processors"], saved
    return shop


def assert_charged_once_at(records: dict[str, list[dict[str, Any]]], payments: list[dict[str, Any]]) -> None:
    """Each payment charged exactly once in all, at the processor the payment names, approved and captured."""
    charges = charges_by_payment(records)
    for payment in payments:
        mine = charges.get(payment["id"], [])
        assert [name for name, _ in mine] == [payment["processor"]], (payment["id"], payment["processor"], mine)
        record = mine[0][1]
        assert (record["status"], record["captured"], record["amount"]) == ("approved", True, payment["amount"])


async def test_a_stopped_processor_fails_over_opens_its_circuit_and_closes_when_back(
    processors: Processors, operator_shop: dict[str, Any]
) -> None:
    p = processors
    first = p.simulators["simulator"]
    shop = await routed_shop(p, "Failover shop", [{"processors": ["simulator", "simulator_b"]}])
    async with merchant_client(p, shop) as client, p.admin() as admin:
        before = await pay_and_wait(client)
        assert (before["status"], before["processor"]) == ("succeeded", "simulator")

        first.kill()
        failed_over = [await pay_and_wait(client, amount=1100 + i) for i in range(FAILURES_TO_OPEN)]
        assert {(x["status"], x["processor"]) for x in failed_over} == {("succeeded", "simulator_b")}
        opened = await wait_for_state(p, "simulator", {"open"}, within=10)
        assert opened["retry_at"] is not None
        # While open, new payments skip it without trying it first.
        skipped = await pay_and_wait(client, amount=1200)
        assert (skipped["status"], skipped["processor"]) == ("succeeded", "simulator_b")
        assert (await processor_states(admin))["simulator_b"]["status"] == "closed"

        first.start()
        # Once open_seconds have passed, the next payment is the probe; it succeeds and closes the circuit.
        deadline = time.monotonic() + 30
        while (back := await pay_and_wait(client, amount=1300))["processor"] != "simulator":
            assert back["status"] == "succeeded", back
            assert time.monotonic() < deadline, "no payment went back to the restarted simulator"
            await asyncio.sleep(0.2)
        assert back["status"] == "succeeded"
        await wait_for_state(p, "simulator", {"closed"}, within=5)
        after = await pay_and_wait(client, amount=1400)
        assert (after["status"], after["processor"]) == ("succeeded", "simulator")
        events = (await admin.get("/admin/v1/events", params={"limit": 100})).json()["data"]
    # The operator is told: the circuit opened, half-opened and closed (newest first).
    mine = [e["type"] for e in events if e["data"].get("processor") == "simulator"]
    assert mine.index("processor.circuit_closed") < mine.index("processor.circuit_half_opened"), mine
    assert mine.index("processor.circuit_half_opened") < mine.index("processor.circuit_opened"), mine

    records = await p.all_records()
    assert_charged_once_at(records, [before, *failed_over, skipped, back, after])


async def test_an_explicit_not_processed_answer_fails_over(
    processors: Processors, operator_shop: dict[str, Any]
) -> None:
    p = processors
    shop = await routed_shop(p, "Not processed shop", [{"processors": ["simulator", "simulator_b"]}])
    await p.simulators["simulator"].configure(error_rate=1.0)  # 503 "nothing was done", before anything
    async with merchant_client(p, shop) as client:
        payments = [await pay_and_wait(client, amount=2100 + i) for i in range(2)]
    requests_seen = (await p.simulators["simulator"].stats())["faults"]["error"]
    await p.simulators["simulator"].configure(**KNOBS_OFF)
    await healed(p, operator_shop, "simulator")
    assert {(x["status"], x["processor"]) for x in payments} == {("succeeded", "simulator_b")}
    assert requests_seen >= len(payments)  # they were tried at `simulator` first, and refused
    assert_charged_once_at(await p.all_records(), payments)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"timeout_rate": 1.0, "timeout_seconds": 2.5}, id="charged-then-timeout"),
        pytest.param({"drop_rate": 1.0, "drop_after_charge_share": 1.0}, id="charged-then-connection-cut"),
    ],
)
async def test_a_charge_whose_answer_is_lost_is_looked_up_never_failed_over(
    processors: Processors, operator_shop: dict[str, Any], fault: dict[str, Any]
) -> None:
    p = processors
    first, second = p.simulators["simulator"], p.simulators["simulator_b"]
    shop = await routed_shop(p, "Lost answer shop", [{"processors": ["simulator", "simulator_b"]}])
    charged_at_b = (await second.stats())["charged"]
    # No notification of the new authorization either: only Tender's look-up can find the charge.
    await first.configure(**fault, notify_on_create=False)
    try:
        async with merchant_client(p, shop) as client:
            accepted = await asyncio.gather(*(pay(client, amount=3100 + i) for i in range(3)))
            payments = await asyncio.gather(*(wait_final(client, a["id"], within=45) for a in accepted))
    finally:
        await first.configure(**KNOBS_OFF)
    faults = (await first.stats())["faults"]
    assert faults["timeout"] + faults["drop"] >= len(payments)  # every first answer was lost
    assert {(x["status"], x["processor"]) for x in payments} == {("succeeded", "simulator")}
    assert (await second.stats())["charged"] == charged_at_b, "a payment charged at simulator went to simulator_b"
    assert_charged_once_at(await p.all_records(), payments)
    await healed(p, operator_shop, "simulator")


async def test_a_route_with_no_other_processor_holds_the_payment_until_it_is_back(processors: Processors) -> None:
    """Nothing to fail over to: the payment waits (it is never failed on a guess) and succeeds once it can."""
    p = processors
    first = p.simulators["simulator"]
    shop = await routed_shop(p, "Single route shop", [{"processors": ["simulator"]}])
    first.kill()
    try:
        async with merchant_client(p, shop) as client:
            accepted = await asyncio.gather(*(pay(client, amount=8100 + i) for i in range(FAILURES_TO_OPEN + 1)))
            await wait_for_state(p, "simulator", {"open"}, within=10)
            waiting = [(await client.get(f"/v1/payments/{x['id']}")).json() for x in accepted]
            assert {x["status"] for x in waiting} == {"processing"}, waiting
            first.start()
            payments = await asyncio.gather(*(wait_final(client, x["id"], within=45) for x in accepted))
    finally:
        if not first.running:
            first.start()
    assert {(x["status"], x["processor"]) for x in payments} == {("succeeded", "simulator")}
    assert_charged_once_at(await p.all_records(), payments)


async def test_routing_by_currency(processors: Processors) -> None:
    p = processors
    rules = [
        {"currency": "BRL", "processors": ["simulator"]},
        {"currency": "USD", "processors": ["simulator_b"]},
    ]
    shop = await routed_shop(p, "Currency shop", rules)
    async with merchant_client(p, shop) as client:
        brl = await asyncio.gather(*(pay(client, amount=4100 + i, currency="BRL") for i in range(3)))
        usd = await asyncio.gather(*(pay(client, amount=4200 + i, currency="USD") for i in range(3)))
        brl = await asyncio.gather(*(wait_final(client, x["id"]) for x in brl))
        usd = await asyncio.gather(*(wait_final(client, x["id"]) for x in usd))
        eur = await pay_and_wait(client, amount=4300, currency="EUR")  # no rule matches: the default
    assert {(x["status"], x["processor"]) for x in brl} == {("succeeded", "simulator")}
    assert {(x["status"], x["processor"]) for x in usd} == {("succeeded", "simulator_b")}
    assert (eur["status"], eur["processor"]) == ("succeeded", "simulator")
    assert_charged_once_at(await p.all_records(), [*brl, *usd, eur])


async def test_routing_by_card_brand_amount_and_a_split(processors: Processors) -> None:
    p = processors
    rules: list[dict[str, Any]] = [
        {"card_brand": "mastercard", "processors": ["simulator_b"]},
        {"amount_min": 100_000, "processors": ["simulator_b", "simulator"]},
        {"currency": "EUR", "processors": ["simulator", "simulator_b"], "split": {"simulator": 50, "simulator_b": 50}},
    ]
    shop = await routed_shop(p, "Rules shop", rules)
    async with merchant_client(p, shop) as client:
        mastercard = await pay(client, amount=7100, payment_method=card("5555555555554444"))
        large = await pay(client, amount=150_000)
        split = await asyncio.gather(*(pay(client, amount=7200 + i, currency="EUR") for i in range(20)))
        finals = await asyncio.gather(*(wait_final(client, x["id"]) for x in [mastercard, large, *split]))
    by_id = {x["id"]: x for x in finals}
    assert (by_id[mastercard["id"]]["processor"], by_id[large["id"]]["processor"]) == ("simulator_b", "simulator_b")
    shares = Counter(by_id[x["id"]]["processor"] for x in split)
    # A deterministic draw from each payment id: 20 payments all on one side would happen about twice in a million.
    assert set(shares) == {"simulator", "simulator_b"}, shares
    assert {x["status"] for x in finals} == {"succeeded"}
    assert_charged_once_at(await p.all_records(), finals)


async def test_pause_moves_new_payments_and_resume_brings_them_back(processors: Processors) -> None:
    p = processors
    shop = await routed_shop(p, "Pause shop", [{"processors": ["simulator", "simulator_b"]}])
    async with merchant_client(p, shop) as client, p.admin() as admin:
        paused = await processor_action(p, "simulator", "pause", {"reason": "acquirer maintenance"})
        assert (paused["paused"], paused["paused_reason"]) == (True, "acquirer maintenance")
        assert (await processor_states(admin))["simulator"]["paused"] is True
        await asyncio.sleep(HEALTH_REFRESH_SECONDS)
        while_paused = [await pay_and_wait(client, amount=5100 + i) for i in range(2)]
        resumed = await processor_action(p, "simulator", "resume")
        assert resumed["paused"] is False
        await asyncio.sleep(HEALTH_REFRESH_SECONDS)
        after = [await pay_and_wait(client, amount=5200 + i) for i in range(2)]
        events = (await admin.get("/admin/v1/events", params={"limit": 100})).json()["data"]
    assert {(x["status"], x["processor"]) for x in while_paused} == {("succeeded", "simulator_b")}
    assert {(x["status"], x["processor"]) for x in after} == {("succeeded", "simulator")}
    assert_charged_once_at(await p.all_records(), [*while_paused, *after])
    types = [e["type"] for e in events if e["data"].get("processor") == "simulator"]
    assert "processor.paused" in types and "processor.resumed" in types, types


async def test_stripe_first_then_the_simulator_when_stripe_is_down(processors: Processors) -> None:
    """Last in the module: localstripe stays stopped."""
    p = processors
    assert p.stripe is not None
    shop = await routed_shop(p, "Stripe shop", [{"processors": ["stripe", "simulator"]}])
    async with merchant_client(p, shop) as client:
        at_stripe = await pay_and_wait(client, amount=6100)
        assert (at_stripe["status"], at_stripe["processor"]) == ("succeeded", "stripe"), at_stripe
        assert str(at_stripe["processor_reference"]).startswith("pi_")
        intent = await p.stripe.intent(at_stripe["processor_reference"])
        assert (intent["status"], intent["amount"]) == ("succeeded", 6100)

        p.stripe.kill()
        failed_over = await pay_and_wait(client, amount=6200)
    assert (failed_over["status"], failed_over["processor"]) == ("succeeded", "simulator"), failed_over
    records = await p.all_records()
    assert at_stripe["id"] not in charges_by_payment(records)
    assert_charged_once_at(records, [failed_over])


async def test_processors_list_names_every_processor_with_its_circuit(processors: Processors) -> None:
    async with processors.admin() as admin, httpx.AsyncClient(base_url=processors.api_url) as anonymous:
        r = await admin.get("/admin/v1/processors")
        unauthenticated = await anonymous.get("/admin/v1/processors")
    assert r.status_code == 200 and r.json()["object"] == "list"
    listed = {x["name"]: x for x in r.json()["data"]}
    assert {"simulator", "simulator_b", "stripe"} <= set(listed)
    assert all(x["status"] in {"closed", "open", "half_open"} for x in listed.values())
    assert unauthenticated.status_code == 401
    async with processors.admin() as admin:
        metrics = (await admin.get("/metrics")).text
    assert 'tender_processor_circuit_state{processor="simulator_b"}' in metrics
