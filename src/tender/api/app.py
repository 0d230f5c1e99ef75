"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tender import __version__
from tender.api import errors
from tender.api.routes import admin, health, payments, webhooks
from tender.bootstrap import Container


def create_app(container: Container) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await container.open()
        try:
            yield
        finally:
            await container.close()

    app = FastAPI(
        title="Tender",
        version=__version__,
        summary="A self-hosted payment service provider",
        lifespan=lifespan,
    )
    app.state.container = container
    errors.install(app)
    app.include_router(payments.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    return app
