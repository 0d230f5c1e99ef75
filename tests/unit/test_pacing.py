"""services/pacing.py: at most N calls in flight per processor, each processor's limit its own."""

from __future__ import annotations

import asyncio

import pytest

from tender.services.pacing import Pacing


async def test_each_processor_has_its_own_slots_and_a_waiting_call_goes_when_one_frees() -> None:
    pacing = Pacing(2)
    release_a = asyncio.Event()
    running: dict[str, int] = {"a": 0, "b": 0}
    done: list[str] = []

    async def call(name: str, gate: asyncio.Event | None) -> str:
        running[name] += 1
        try:
            if gate is not None:
                await gate.wait()
            return name
        finally:
            running[name] -= 1
            done.append(name)

    slow = [asyncio.create_task(pacing.call("a", lambda: call("a", release_a))) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert running["a"] == 2  # the third call to "a" waits for a slot
    # A slow processor holds up nobody else: "b" has two slots of its own.
    assert await asyncio.gather(*(pacing.call("b", lambda: call("b", None)) for _ in range(2))) == ["b", "b"]
    assert running["a"] == 2 and done == ["b", "b"]
    release_a.set()
    assert await asyncio.gather(*slow) == ["a", "a", "a"]
    assert running == {"a": 0, "b": 0}


async def test_a_failing_call_gives_its_slot_back() -> None:
    pacing = Pacing(1)

    async def boom() -> None:
        raise RuntimeError("processor down")

    with pytest.raises(RuntimeError):
        await pacing.call("a", boom)
    assert await asyncio.wait_for(pacing.call("a", lambda: asyncio.sleep(0, "ok")), 1) == "ok"


def test_at_least_one_call_in_flight() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Pacing(0)
