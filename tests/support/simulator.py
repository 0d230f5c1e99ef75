"""The card-acquirer simulator in process over ASGI, and a notification receiver that fails on purpose."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from starlette.applications import Starlette

from tender.simulator import SimulatorConfig, create_app

BASE = "http://sim.test"
SECRET = "simsecret_unit"


def ref() -> str:
    return "att_" + uuid.uuid4().hex


class Sim:
    """An in-process simulator and an HTTP client on it."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient) -> None:
        self.app = app
        self.http = client

    async def authorize(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": body["reference"]})

    async def records(self, payment: str | None = None) -> list[dict[str, Any]]:
        params = {"payment": payment} if payment else {}
        response = await self.http.get("/_sim/authorizations", params=params)
        assert response.status_code == 200
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = (await self.http.get("/_sim/stats")).json()
        return stats


async def open_sim(config: SimulatorConfig, notify_client: httpx.AsyncClient | None = None) -> tuple[Sim, Any]:
    app = create_app(config, notify_client=notify_client)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    return Sim(app, client), client


class Receiver:
    """Tender's notification endpoint, played by an httpx MockTransport; fails its first call."""

    def __init__(self, fail_first: int = 1) -> None:
        self.calls: list[httpx.Request] = []
        self.fail_first = fail_first
        self.arrived = asyncio.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        self.arrived.set()
        return httpx.Response(500 if len(self.calls) <= self.fail_first else 204)

    async def wait_for(self, n: int, seconds: float = 5.0) -> None:
        async with asyncio.timeout(seconds):
            while len(self.calls) < n:
                self.arrived.clear()
                await self.arrived.wait()
