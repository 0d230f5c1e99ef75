"""Fault tests: the simulator as a real process over real sockets, Tender's client against it.

They prove the classification the worker relies on: TRANSIENT only when nothing can have been
charged, UNKNOWN when it may have been, and that a look-up then tells the truth the simulator's
own record agrees with.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tender.processors.base import AuthorizeRequest, CardData, Outcome
from tender.processors.simulator import SimulatorProcessor

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "tender.simulator", "--port", str(port), "--timeout-seconds", "1.5"]
    cmd += ["--seed", "3", "--log-level", "warning"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                output = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"simulator exited with {proc.returncode}: {output}")
            try:
                if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("simulator did not become healthy")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
async def admin(sim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim_url, timeout=5) as client:
        yield client
        # Leave no fault behind for the next test.
        reset = {"error_rate": 0, "timeout_rate": 0, "drop_rate": 0, "latency_ms": 0}
        assert (await client.post("/_sim/config", json=reset)).status_code == 200


@pytest.fixture
async def processor(sim_url: str) -> AsyncIterator[SimulatorProcessor]:
    p = SimulatorProcessor(sim_url, timeout=5.0)
    yield p
    await p.aclose()


def request(number: str = "4242424242424242", reference: str | None = None) -> AuthorizeRequest:
    return AuthorizeRequest(
        reference=reference or "att_" + uuid.uuid4().hex,
        payment_id="pay_" + uuid.uuid4().hex[:12],
        amount=4200,
        currency="EUR",
        capture=True,
        card=CardData(number, 1, 2032, "123", "Chewie"),
    )


async def records(admin: httpx.AsyncClient, payment: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await admin.get("/_sim/authorizations", params={"payment": payment})).json()["data"]
    return data


async def test_approved(processor: SimulatorProcessor, admin: httpx.AsyncClient) -> None:
    req = request()
    result = await processor.authorize(req)
    assert (result.outcome, result.captured) == (Outcome.APPROVED, True)
    looked = await processor.lookup(req.reference)
    assert (looked.outcome, looked.processor_reference) == (Outcome.APPROVED, result.processor_reference)
    [record] = await records(admin, req.payment_id)
    assert record["id"] == result.processor_reference


async def test_declined(processor: SimulatorProcessor) -> None:
    req = request("4000000000000002")
    result = await processor.authorize(req)
    assert (result.outcome, result.failure_code, result.decline_code) == (
        Outcome.DECLINED,
        "card_declined",
        "generic_decline",
    )
    assert (await processor.lookup(req.reference)).outcome is Outcome.DECLINED


async def test_timeout_is_unknown_and_lookup_shows_the_charge(
    sim_url: str, processor: SimulatorProcessor, admin: httpx.AsyncClient
) -> None:
    await admin.post("/_sim/config", json={"timeout_rate": 1.0})
    impatient = SimulatorProcessor(sim_url, timeout=0.5)
    req = request()
    try:
        started = time.monotonic()
        result = await impatient.authorize(req)
        assert time.monotonic() - started < 1.4  # gave up before the simulator answered
    finally:
        await impatient.aclose()
    assert result.outcome is Outcome.UNKNOWN
    looked = await processor.lookup(req.reference)  # look-ups are never faulted
    assert (looked.outcome, looked.captured) == (Outcome.APPROVED, True)
    [record] = await records(admin, req.payment_id)
    assert record["status"] == "approved"
    assert (await admin.get("/_sim/stats")).json()["faults"]["timeout"] >= 1


async def test_dropped_connection_is_never_transient_charge(
    processor: SimulatorProcessor, admin: httpx.AsyncClient
) -> None:
    await admin.post("/_sim/config", json={"drop_rate": 1.0})
    reqs = [request() for _ in range(12)]
    results = [await processor.authorize(r) for r in reqs]
    await admin.post("/_sim/config", json={"drop_rate": 0})
    charged: set[str] = set()
    for req, result in zip(reqs, results, strict=True):
        assert result.outcome in (Outcome.UNKNOWN, Outcome.TRANSIENT)
        recorded = await records(admin, req.payment_id)
        looked = await processor.lookup(req.reference)
        if recorded:
            charged.add(req.reference)
            assert result.outcome is Outcome.UNKNOWN  # TRANSIENT would invite a second charge
            assert looked.outcome is Outcome.APPROVED
            assert looked.processor_reference == recorded[0]["id"]
        else:
            assert looked.outcome is Outcome.NOT_FOUND
    assert 0 < len(charged) < len(reqs)  # the seed cut connections both before and after charging

    # Retrying every reference: those charged before are replayed, never charged again.
    retried = [await processor.authorize(r) for r in reqs]
    assert all(r.outcome is Outcome.APPROVED for r in retried)
    for req in reqs:
        [record] = await records(admin, req.payment_id)
        assert record["request_count"] == (2 if req.reference in charged else 1)


async def test_error_is_transient_and_nothing_is_charged(
    processor: SimulatorProcessor, admin: httpx.AsyncClient
) -> None:
    await admin.post("/_sim/config", json={"error_rate": 1.0})
    req = request()
    result = await processor.authorize(req)
    assert result.outcome is Outcome.TRANSIENT
    assert (await processor.lookup(req.reference)).outcome is Outcome.NOT_FOUND
    assert await records(admin, req.payment_id) == []


async def test_nothing_listening_is_transient() -> None:
    processor = SimulatorProcessor(f"http://127.0.0.1:{_free_port()}", timeout=1.0)
    try:
        assert (await processor.authorize(request())).outcome is Outcome.TRANSIENT
        assert (await processor.lookup("att_nothing")).outcome is Outcome.TRANSIENT
    finally:
        await processor.aclose()


async def test_concurrent_duplicates_charge_once(processor: SimulatorProcessor, admin: httpx.AsyncClient) -> None:
    await admin.post("/_sim/config", json={"latency_ms": 20, "latency_jitter_ms": 30})
    same = request()
    others = [request() for _ in range(150)]
    results = await asyncio.gather(*(processor.authorize(same) for _ in range(50)), *map(processor.authorize, others))
    assert all(r.outcome is Outcome.APPROVED for r in results)
    assert len({r.processor_reference for r in results[:50]}) == 1
    [record] = await records(admin, same.payment_id)
    assert record["request_count"] == 50
