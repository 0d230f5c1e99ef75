"""Processor health against real PostgreSQL (issue 14 items 3 and 4): circuits shared by processes (two
ProcessorHealth instances stand for two workers), the half-open probe limit, operator events, pause and resume
through the API and the CLI, GET /admin/v1/processors, GET /admin/v1/events and the /metrics gauges."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tender.domain.circuit import CircuitPolicy
from tender.services.processor_health import Availability, CallOutcome, ProcessorHealth, set_paused_in
from tests.support.money import admin

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
    kept = [a[name] for a in answers if not a[name].usable]
    assert all(k.reason == "open" and k.retry_at is not None for k in kept)
    soon = datetime.now(UTC) + timedelta(seconds=6)  # ask again soon: the probe's answer may close it
    assert all(k.retry_at is not None and k.retry_at < soon for k in kept)
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
    async with container.db.transaction() as conn:
        await set_paused_in(conn, FAST, name, paused=True)  # a pause stops the processor for every account
    assert (await health.availability([name], account="pa_two"))[name].reason == "paused"


# --- the operator's view and controls -------------------------------------------------------------------------


@pytest.fixture
async def operator_api(container: Any) -> Any:
    """The API app on a container with one more processor on, under a name of this test's own (pausing it
    disturbs no other test), as TENDER_SIMULATOR_INSTANCES would add."""
    import httpx

    from tender.api.app import create_app
    from tender.bootstrap import Container

    name = _name()
    processors = {**container.processors, name: container.processors["simulator"]}
    own = Container(settings=container.settings, db=container.db, vault=container.vault, processors=processors)
    transport = httpx.ASGITransport(app=create_app(own))
    async with httpx.AsyncClient(transport=transport, base_url="http://tender.test") as client:
        yield client, name


async def test_pause_and_resume_over_the_api(operator_api: Any, settings: Any, container: Any) -> None:
    api, name = operator_api
    listed = await api.get("/admin/v1/processors", headers=admin(settings))
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["object"] == "list" and body["has_more"] is False
    mine = next(p for p in body["data"] if p["name"] == name)
    assert mine == {
        "object": "processor", "name": name, "status": "closed", "paused": False, "consecutive_failures": 0,
        "failure_rate": "0", "calls_in_window": 0, "opened_at": None, "retry_at": None, "paused_reason": None,
        "paused_at": None, "accounts": [],
    }  # fmt: skip
    assert "simulator" in [p["name"] for p in body["data"]]

    paused = await api.post(f"/admin/v1/processors/{name}/pause", json={"reason": "acquirer maintenance"},
                            headers=admin(settings))  # fmt: skip
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.json()["paused_reason"] == "acquirer maintenance"
    assert paused.json()["paused_at"] is not None
    health = ProcessorHealth(container.db, FAST, refresh_seconds=0)
    seen = (await health.availability([name, "simulator"]))[name]
    assert seen == Availability(name, False, "paused", None)
    again = await api.post(f"/admin/v1/processors/{name}/pause", headers=admin(settings))  # paused already
    assert again.status_code == 200 and again.json()["paused"] is True

    resumed = await api.post(f"/admin/v1/processors/{name}/resume", headers=admin(settings))
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False and resumed.json()["paused_reason"] is None
    assert (await health.availability([name]))[name].usable
    assert await _events(container, name) == ["processor.paused", "processor.paused", "processor.resumed"]

    events = await api.get("/admin/v1/events", params={"type": "processor.paused", "limit": 100},
                           headers=admin(settings))  # fmt: skip
    assert events.status_code == 200
    mine_events = [e for e in events.json()["data"] if e["data"]["processor"] == name]
    assert [e["data"]["reason"] for e in mine_events] == [None, "acquirer maintenance"]  # newest first
    assert all(e["object"] == "operator_event" and e["id"].startswith("evt_") for e in mine_events)
    assert all(e["type"] == "processor.paused" for e in events.json()["data"])


@pytest.mark.parametrize("path", ["/admin/v1/processors/nope/pause", "/admin/v1/processors/nope/resume"])
async def test_an_unknown_processor_is_a_404(operator_api: Any, settings: Any, path: str) -> None:
    api, _ = operator_api
    r = await api.post(path, headers=admin(settings))
    assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"
    assert "nope" not in r.json()["error"]["message"]


async def test_a_bad_reason_is_a_400_and_changes_nothing(operator_api: Any, settings: Any, container: Any) -> None:
    api, name = operator_api
    for body, param in (({"reason": "x" * 501}, "reason"), ({"reason": 7}, "reason"), ({"why": "x"}, "why")):
        r = await api.post(f"/admin/v1/processors/{name}/pause", json=body, headers=admin(settings))
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert (await api.post(f"/admin/v1/processors/{name}/pause")).status_code == 401
    assert await _events(container, name) == []


async def test_the_list_and_metrics_show_an_open_circuit(operator_api: Any, settings: Any, container: Any) -> None:
    api, name = operator_api
    await ProcessorHealth(container.db, settings.circuit_policy).record(
        [CallOutcome(name, ok=True)] + [CallOutcome(name, ok=False)] * 5 + [CallOutcome(name, ok=False, account="pa_x")]
    )
    mine = next(p for p in (await api.get("/admin/v1/processors", headers=admin(settings))).json()["data"]
                if p["name"] == name)  # fmt: skip
    assert mine["status"] == "open" and mine["consecutive_failures"] == 5 and mine["failure_rate"] == "0.8333"
    assert mine["calls_in_window"] == 6 and mine["opened_at"] and mine["retry_at"]
    assert mine["accounts"] == [
        {"account": "pa_x", "status": "closed", "consecutive_failures": 1, "failure_rate": "1.0000",
         "calls_in_window": 1, "opened_at": None, "retry_at": None},
    ]  # fmt: skip
    await api.post(f"/admin/v1/processors/{name}/pause", headers=admin(settings))
    metrics = await api.get("/metrics", headers=admin(settings))
    assert metrics.status_code == 200
    assert f'tender_processor_circuit_state{{processor="{name}"}} 2.0' in metrics.text
    assert f'tender_processor_paused{{processor="{name}"}} 1.0' in metrics.text
    assert f'tender_processor_consecutive_failures{{processor="{name}"}} 5.0' in metrics.text
    assert 'tender_processor_circuit_state{processor="simulator"}' in metrics.text
    opened = await api.get("/admin/v1/events", params={"type": "processor.circuit_opened", "limit": 100},
                           headers=admin(settings))  # fmt: skip
    event = next(e for e in opened.json()["data"] if e["data"]["processor"] == name)
    assert event["data"]["reason"] == "consecutive_failures" and event["data"]["status"] == "open"


def test_the_cli_pauses_lists_and_resumes(container: Any, tender_env: dict[str, str]) -> None:
    import json
    import os
    import subprocess
    import sys

    # The simulator is on by default (TENDER_SIMULATOR_URL); it is paused only for the seconds this test takes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")} | tender_env | {"COLUMNS": "200"}

    def tender(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tender", "processor", *args],
            env=env, capture_output=True, text=True, timeout=60, check=check,
        )  # fmt: skip

    try:
        assert "paused (card network outage)" in tender("pause", "simulator", "--reason", "card network outage").stdout
        listed = json.loads(tender("list", "--json").stdout)
        simulator = next(p for p in listed["data"] if p["name"] == "simulator")
        assert simulator["paused"] is True and simulator["paused_reason"] == "card network outage"
        assert "card network outage" in tender("list").stdout
    finally:
        assert "resumed" in tender("resume", "simulator").stdout
    listed = json.loads(tender("list", "--json").stdout)
    assert next(p for p in listed["data"] if p["name"] == "simulator")["paused"] is False
    missing = tender("pause", "nope", check=False)
    assert missing.returncode == 1 and "No such processor" in missing.stderr


async def test_the_separate_metrics_listener_refreshes_the_gauges(settings: Any, container: Any) -> None:
    """TENDER_METRICS_ADDRESS: its scrapes run in a thread that cannot query, so the gauges are refreshed for it."""
    import httpx

    from tender.api.metrics import MetricsListener, refresh_processor_gauges
    from tests.support.serve import free_port

    name = _name()
    await ProcessorHealth(container.db, settings.circuit_policy).record([CallOutcome(name, ok=False)] * 2)
    address = f"127.0.0.1:{free_port()}"
    listener = MetricsListener(address, refresh=lambda: refresh_processor_gauges(container.db, FAST, [name]))
    listener.start()
    try:
        line = f'tender_processor_consecutive_failures{{processor="{name}"}} 2.0'
        async with httpx.AsyncClient() as client:
            for _ in range(50):
                if line in (await client.get(f"http://{address}/metrics")).text:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the listener never showed the processor's gauge")
    finally:
        listener.stop()
