"""Fault injection for the charging endpoints: latency, errors, slow answers and cut connections."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


@dataclass
class FaultCounts:
    error: int = 0
    timeout: int = 0
    drop: int = 0


@dataclass
class Stats:
    requests: int = 0  # requests to charging endpoints, faulted or not
    charged: int = 0  # authorizations created (each reference at most once)
    replays: int = 0
    mismatches: int = 0
    operations: int = 0  # captures, cancels and refunds created
    faults: FaultCounts = field(default_factory=FaultCounts)


class DroppedResponse(Response):
    """Promise a body, send part of it, and stop: the client sees the connection cut mid-answer.

    Returning from the ASGI call with the response incomplete makes uvicorn close the socket
    ("ASGI callable returned without completing response."), which httpx reports as
    RemoteProtocolError. Raising would do the same with a traceback in the log for every drop.
    """

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})


class FaultPlan:
    """One request's faults, drawn up front from the simulator's (optionally seeded) generator."""

    __slots__ = ("drop", "drop_after_charge", "error", "latency_seconds", "timeout")

    def __init__(
        self,
        rng: random.Random,
        *,
        latency_ms: int,
        latency_jitter_ms: int,
        error_rate: float,
        drop_rate: float,
        timeout_rate: float,
        drop_after_charge_share: float = 0.5,
    ) -> None:
        jitter = rng.uniform(0, latency_jitter_ms) if latency_jitter_ms else 0.0
        self.latency_seconds = (latency_ms + jitter) / 1000
        # Independent draws in a fixed order, so a seed reproduces the same run.
        self.error = rng.random() < error_rate
        self.drop = not self.error and rng.random() < drop_rate
        self.drop_after_charge = self.drop and rng.random() < drop_after_charge_share
        self.timeout = not (self.error or self.drop) and rng.random() < timeout_rate

    async def delay(self) -> None:
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)
