"""The worker loop: a notification that arrives while a batch runs must not be lost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tender.worker.runner import Pump, Worker

pytestmark = pytest.mark.integration


async def test_a_notification_during_a_batch_wakes_the_next_claim(container: Any) -> None:
    worker = Worker(container)
    calls: list[float] = []
    stop = asyncio.Event()

    async def run_batch(limit: int) -> int:
        calls.append(time.monotonic())
        if len(calls) == 1:
            worker._wakes["payments"].set()  # a payment was inserted while this batch was running
        if len(calls) == 2:
            stop.set()
        return 0

    worker.pumps = [Pump("test", run_batch, batch_size=10, lanes=1, wakes_on="payments")]
    container.settings.worker_poll_seconds, poll = 5.0, container.settings.worker_poll_seconds
    try:
        await asyncio.wait_for(worker.run(stop), timeout=10)
    finally:
        container.settings.worker_poll_seconds = poll
    assert len(calls) == 2
    assert calls[1] - calls[0] < 1.0  # woken by the notification, not by the 5 s poll
