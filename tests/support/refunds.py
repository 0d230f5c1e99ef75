"""The refund pump with a test's back-off, run until nothing is due, and `POST /v1/refunds`."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tender.domain.retry import RetryPolicy
from tender.worker.pumps import RefundPump
from tests.support.api import auth


def pump(container: Any, processors: Any = None, **retry: Any) -> RefundPump:
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0, **retry)
    return RefundPump(container.db, processors or container.processors, lease_seconds=30, retry=policy)


async def drain_refunds(p: RefundPump, rounds: int = 60) -> None:
    idle = 0
    for _ in range(rounds):
        idle = idle + 1 if await p.run_batch(100) == 0 else 0
        if idle == 3:
            return
        await asyncio.sleep(0.06)


async def refund(api: Any, merchant: Any, body: dict[str, Any], **headers: str) -> httpx.Response:
    response: httpx.Response = await api.post(
        "/v1/refunds", json=body, headers={**auth(merchant.secret_key), **headers}
    )
    return response
