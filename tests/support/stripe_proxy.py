"""A small HTTP proxy in front of localstripe that injects Stripe's failures, for the fault tests.

It forwards every request as it is, except where a test armed a fault for a path: `drop_answer` forwards the
request (localstripe acts on it) and then never answers (the client times out: the answer is lost after the
charge), and `fail` answers a status (429, 500, 503) with Stripe's error body WITHOUT forwarding (Stripe
refused or failed before acting). Every request's method and path is recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web


@dataclass
class Fault:
    path_suffix: str  # e.g. "/confirm"
    kind: str  # "drop_answer" | "fail"
    status: int = 500
    times: int = 1


@dataclass
class StripeProxy:
    upstream: str
    url: str = ""
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)

    def arm(self, fault: Fault) -> None:
        self.faults.append(fault)

    def calls(self, suffix: str) -> int:
        return sum(1 for _, path in self.seen if path.endswith(suffix))

    def _fault_for(self, path: str) -> Fault | None:
        for fault in self.faults:
            if path.endswith(fault.path_suffix) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path))
        fault = self._fault_for(request.path)
        if fault is not None and fault.kind == "fail":
            error = {"error": {"type": "api_error", "message": f"injected HTTP {fault.status}"}}
            if fault.status == 429:
                error = {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many"}}
            return web.json_response(error, status=fault.status)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(request.method, self.upstream + request.path_qs, data=body, headers=headers) as upstream,
        ):
            answer = await upstream.read()
            status, content_type = upstream.status, upstream.content_type
        if fault is not None and fault.kind == "drop_answer":
            await asyncio.sleep(3600)  # localstripe acted; the answer never comes (the client times out)
        return web.Response(body=answer, status=status, content_type=content_type)


@asynccontextmanager
async def running_proxy(upstream: str) -> AsyncIterator[StripeProxy]:
    proxy = StripeProxy(upstream)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        await runner.cleanup()
