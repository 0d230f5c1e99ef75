"""Prometheus metrics: the counters, and the separate listener that may serve them.

`GET /metrics` on the API answers only the operator key (or anyone with TENDER_METRICS_PUBLIC=true):
counters tell an outsider how much business a merchant base does and when. TENDER_METRICS_ADDRESS
("host:port") serves them without a key on a listener of its own, for a Prometheus scraper on a network
the API's clients cannot reach.
"""

from __future__ import annotations

import errno
import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, start_http_server

from tender.config import listen_address

log = logging.getLogger(__name__)

PAYMENTS_ACCEPTED = Counter("tender_payments_accepted_total", "Payments accepted (202) by this API process")


class MetricsListener:
    """The separate listener, run in a thread by the API's lifespan."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

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

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
