"""Signed asynchronous notifications from the simulator to Tender, retried with backoff.

Delivery runs in its own task so neither the shopper on the 3-D Secure page nor the caller of the
authorization API waits for Tender. Each attempt is signed afresh, so a late retry is not refused
as stale by the receiver's timestamp tolerance.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("tender.simulator.notify")

SIGNATURE_HEADER = "Simulator-Signature"
# Seconds to wait before each attempt; six attempts over about a quarter of a minute.
RETRY_DELAYS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The Simulator-Signature header value: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class NotifyStats:
    sent: int = 0  # delivered with a 2xx answer
    retried: int = 0
    failed: int = 0  # gave up after the last attempt


class Notifier:
    def __init__(
        self,
        target: Callable[[], tuple[str | None, str]],
        client: httpx.AsyncClient | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        # `target` is read at send time so run-time config changes (notify_url) apply at once.
        self._target = target
        self._client = client
        self._owns_client = client is None
        self._retry_delays = retry_delays
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = NotifyStats()

    def publish(self, data: dict[str, Any], event_type: str = "authorization.updated") -> str | None:
        """Queue one event for delivery; its id, or None when no notify_url is configured."""
        url, _ = self._target()
        if not url:
            return None
        event = {
            "id": "simevt_" + secrets.token_hex(12),
            "type": event_type,
            "created": int(time.time()),
            "data": data,
        }
        task = asyncio.get_running_loop().create_task(self._deliver(event))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)
        return str(event["id"])

    async def drain(self, grace_seconds: float | None = None) -> None:
        """Wait for deliveries under way (tests and graceful shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_seconds)

    async def aclose(self, grace_seconds: float = 2.0) -> None:
        await self.drain(grace_seconds)
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def _deliver(self, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        for attempt, delay in enumerate(self._retry_delays):
            if delay:
                self.stats.retried += 1
                await asyncio.sleep(delay)
            url, secret = self._target()
            if not url:
                return
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, int(time.time()))}
            try:
                response = await self._client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                log.debug("notification %s attempt %d: %s", event["id"], attempt + 1, type(exc).__name__)
                continue
            if response.is_success:
                self.stats.sent += 1
                return
            log.debug("notification %s attempt %d: HTTP %d", event["id"], attempt + 1, response.status_code)
        self.stats.failed += 1
        log.warning("notification %s given up after %d attempts", event["id"], len(self._retry_delays))
