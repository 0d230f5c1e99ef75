"""Prometheus metrics: the counters, and the separate listener that may serve them.

`GET /metrics` on the API answers only the operator key (or anyone with TENDER_METRICS_PUBLIC=true):
counters tell an outsider how much business a merchant base does and when. TENDER_METRICS_ADDRESS
("host:port") serves them without a key on a listener of its own, for a Prometheus scraper on a network
the API's clients cannot reach.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, start_http_server

from tender.config import listen_address
from tender.domain.circuit import CircuitPolicy, CircuitState
from tender.services import processor_health
from tender.store.db import Database

log = logging.getLogger(__name__)

PAYMENTS_ACCEPTED = Counter("tender_payments_accepted_total", "Payments accepted (202) by this API process")
# The batched accept (services/intake.py): how many transactions, and how many payments they held; the rest of
# tender_payments_accepted_total went one by one. Payments per batch = batched / batches.
PAYMENT_BATCHES = Counter("tender_payment_batches_total", "Transactions that accepted new payments together")
PAYMENTS_BATCHED = Counter("tender_payments_batched_total", "Payments accepted in those transactions")


def batch_committed(payments: int) -> None:
    """services/intake.py's hook: a batch of `payments` new payments committed."""
    PAYMENT_BATCHES.inc()
    PAYMENTS_BATCHED.inc(payments)


# Each processor's breaker, read from processor_health at scrape time (the table is shared by every process,
# so any API process answers for all of them).
CIRCUIT_STATE = Gauge(
    "tender_processor_circuit_state", "Circuit breaker state: 0 closed, 1 half_open, 2 open", ["processor"]
)
PROCESSOR_PAUSED = Gauge("tender_processor_paused", "1 while the operator has paused the processor", ["processor"])
CONSECUTIVE_FAILURES = Gauge(
    "tender_processor_consecutive_failures", "Failed calls in a row (refused, 5xx, timeout)", ["processor"]
)
REFRESH_SECONDS = 10.0  # how often the separate listener's processor gauges are read again
_STATE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


async def refresh_processor_gauges(db: Database, policy: CircuitPolicy, processors: Iterable[str]) -> None:
    """Set the processor gauges from the table, for the processors that are on. A database problem leaves the
    last values (logged): a scrape never fails for it."""
    try:
        found = await processor_health.statuses(db, policy, processors)
    except Exception:
        log.exception("metrics: could not read processor health; the processor gauges keep their last values")
        return
    for gauge in (CIRCUIT_STATE, PROCESSOR_PAUSED, CONSECUTIVE_FAILURES):
        gauge.clear()
    for status in found:
        CIRCUIT_STATE.labels(status.name).set(_STATE_VALUE[status.status])
        PROCESSOR_PAUSED.labels(status.name).set(1 if status.paused else 0)
        CONSECUTIVE_FAILURES.labels(status.name).set(status.consecutive_failures)


class MetricsListener:
    """The separate listener, run in a thread by the API's lifespan."""

    def __init__(self, address: str, refresh: Callable[[], Awaitable[None]] | None = None) -> None:
        self.address = address
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        # Gauges read from the database (the processors'), refreshed every REFRESH_SECONDS while it serves: its
        # scrapes arrive in a thread of its own, which cannot query, unlike the API's GET /metrics.
        self._refresh = refresh
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        host, port = listen_address(self.address)
        try:
            self._server, self._thread = start_http_server(port, addr=host)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            # `tender api --workers N`: the first process serves the metrics address, the others cannot.
            log.warning("metrics address %s is in use (by another API process?); not serving it here", self.address)
            return
        log.info("serving /metrics on %s", self.address)
        if self._refresh is not None:
            self._refresher = asyncio.get_running_loop().create_task(self._refreshing(self._refresh))

    @staticmethod
    async def _refreshing(refresh: Callable[[], Awaitable[None]]) -> None:
        while True:
            await refresh()  # logs its own errors and never raises
            await asyncio.sleep(REFRESH_SECONDS)

    def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
