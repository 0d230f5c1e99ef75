"""The FastAPI application factory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig

from tender import __version__
from tender.api import errors
from tender.api.limits import RequestLimits
from tender.api.metrics import MetricsListener, batch_committed, refresh_processor_gauges
from tender.api.retry import RetryOnLostConnection
from tender.api.routes import (
    admin,
    admin_billing,
    admin_money,
    admin_processors,
    admin_reconciliations,
    admin_routing,
    checkout_sessions,
    customers,
    events,
    health,
    invoices,
    money,
    payment_events,
    payment_methods,
    payments,
    refunds,
    subscriptions,
    test_clocks,
    webhook_endpoints,
    webhooks,
)
from tender.bootstrap import Container
from tender.services.live import PaymentStatusHub
from tender.web import dashboard, pages

_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(container: Container) -> FastAPI:
    # One LISTEN connection per API process feeds every `Prefer: wait` and SSE stream (services/live.py).
    hub = PaymentStatusHub(container.listen_url)

    address = container.settings.metrics_address
    metrics_listener = MetricsListener(address, refresh=lambda: refresh_processor_gauges(
        container.db, container.settings.circuit_policy, container.processors
    )) if address else None  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await container.open()
        try:
            await hub.start()
            # Caches API keys only while it hears every key roll (services/merchants.py).
            await container.authenticator.start()
            if metrics_listener is not None:
                metrics_listener.start()
            try:
                yield
            finally:
                if metrics_listener is not None:
                    metrics_listener.stop()
                await container.authenticator.close()
                await hub.stop()
        finally:
            await container.close()

    app = FastAPI(
        title="Tender",
        version=__version__,
        summary="A self-hosted payment service provider",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry looks up the global providers on every request (about 2 % of the
        # API's CPU, issue 16) though Tender configures none; kept when the environment sets OTEL up.
        telemetry=None if any(name.startswith("OTEL_") for name in os.environ) else _NO_TELEMETRY,
    )
    # The API's pool hands out a connection without a round trip when its socket is quiet (store/db.py).
    container.db.trust_quiet_connections = True
    container.intake.on_batch = batch_committed
    app.state.container = container
    app.state.hub = hub
    # Added first, so innermost: the one run it may repeat passes every other middleware once (api/retry.py).
    app.add_middleware(RetryOnLostConnection)
    errors.install(app)
    app.add_middleware(RequestLimits, max_body_bytes=container.settings.max_body_bytes)
    app.include_router(payments.router)
    app.include_router(refunds.router)
    app.include_router(customers.router)
    app.include_router(payment_methods.router)
    app.include_router(test_clocks.router)
    app.include_router(subscriptions.router)
    app.include_router(invoices.router)
    app.include_router(payment_events.router)
    app.include_router(checkout_sessions.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    dashboard.install(app)
    app.include_router(events.router)
    app.include_router(webhook_endpoints.router)
    app.include_router(webhooks.router)
    app.include_router(money.router)
    app.include_router(admin.router)
    app.include_router(admin_money.router)
    app.include_router(admin_billing.router)
    app.include_router(admin_processors.router)
    app.include_router(admin_reconciliations.router)
    app.include_router(admin_routing.router)
    app.include_router(health.router)
    return app
