"""The API app and the simulator served on loopback ports from a thread with its own event loop.

Schemathesis calls the API synchronously (requests), so the app cannot share the test's thread: a sync
test would block the loop that serves it. The container (and its pool) is built inside the thread's loop,
the app runs its real lifespan (container opened, payment status hub listening), and `run()` lets the
fixtures drive the same container (seeding, worker pumps) from outside.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal, TypeVar

import uvicorn

from tender.bootstrap import Container

T = TypeVar("T")


@asynccontextmanager
async def serve(app: Any, *, lifespan: Literal["auto", "on", "off"]) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False)
    server = uvicorn.Server(config)  # off the main thread, it installs no signal handlers
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class ServedStack:
    """Start with `start(settings)`; `api_url`, `simulator_url` and `container` are set once it returns."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-stack", daemon=True)
        self._exit = AsyncExitStack()
        self.api_url = ""
        self.simulator_url = ""
        self.container: Container | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run a coroutine on the stack's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, settings: Any) -> None:
        self._thread.start()
        self.run(self._start(settings))

    async def _start(self, settings: Any) -> None:
        from tender.api.app import create_app
        from tender.bootstrap import build
        from tender.processors.simulator import SimulatorProcessor
        from tender.simulator.app import create_app as create_simulator
        from tender.simulator.config import SimulatorConfig

        # As tests/conftest.py builds them, so the two agree on the notification secret.
        simulator = create_simulator(SimulatorConfig(public_url="http://simulator.test"))
        self.simulator_url = await self._exit.enter_async_context(serve(simulator, lifespan="auto"))
        container = build(settings, settings.database_url)
        container.processors = {"simulator": SimulatorProcessor(self.simulator_url)}
        self.container = container
        # The app's own lifespan opens the container and starts the status hub, as in production.
        self.api_url = await self._exit.enter_async_context(serve(create_app(container), lifespan="on"))

    def stop(self) -> None:
        if self._thread.is_alive():
            self.run(self._exit.aclose())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.loop.close()
