"""The `tender` command: up, api, worker, simulator, migrate, merchant."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Annotated

import typer

from tender.config import Settings
from tender.runtime import resolve_database, setup_logging
from tender.simulator.command import simulator_command

app = typer.Typer(help="Tender: a self-hosted payment service provider.", no_args_is_help=True)
merchant_app = typer.Typer(help="Manage merchants.", no_args_is_help=True)
app.add_typer(merchant_app, name="merchant")
app.command("simulator", help="Run the card-acquirer simulator service.")(simulator_command)

log = logging.getLogger("tender")


@app.command()
def migrate() -> None:
    """Apply the database migrations (embedded PostgreSQL unless TENDER_DATABASE_URL is set)."""
    from tender.store import migrate as migrations

    settings = Settings()
    setup_logging(settings.log_level)
    db = resolve_database(settings)
    migrations.upgrade(db.url)
    typer.echo(f"schema at revision {migrations.current_revision(db.url)}")


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Default: TENDER_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="Default: TENDER_PORT or 8000")] = None,
    workers: Annotated[int, typer.Option(help="Server processes")] = 1,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    settings = Settings()
    setup_logging(settings.log_level)
    db = resolve_database(settings)
    os.environ["TENDER_DATABASE_URL"] = db.url
    uvicorn.run(
        "tender.api.main:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


@app.command()
def worker() -> None:
    """Run a background worker (any number may share one database)."""
    from tender.bootstrap import build
    from tender.worker.runner import Worker

    settings = Settings()
    setup_logging(settings.log_level)
    db = resolve_database(settings)

    async def main() -> None:
        container = build(settings, db.url)
        await container.open()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker started (pid %d)", os.getpid())
        try:
            await Worker(container).run(stop)
        finally:
            await container.close()
        log.info("worker stopped")

    asyncio.run(main())


@merchant_app.command("create")
def merchant_create(
    name: str, as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON")] = False
) -> None:
    """Create a merchant and print its keys (shown once)."""
    from tender.services import merchants
    from tender.services.objects import merchant_object
    from tender.store.db import Database

    settings = Settings()
    setup_logging("WARNING")
    db = resolve_database(settings)

    async def main() -> merchants.NewMerchant:
        database = Database(db.url, min_size=1, max_size=1)
        await database.open()
        try:
            return await merchants.create_merchant(database, name)
        finally:
            await database.close()

    created = asyncio.run(main())
    body = {
        **merchant_object(created.merchant),
        "secret_key": created.secret_key,
        "publishable_key": created.publishable_key,
    }
    if as_json:
        typer.echo(json.dumps(body))
    else:
        typer.echo(f"merchant {body['id']} ({body['name']})")
        typer.echo(f"  secret key:      {body['secret_key']}")
        typer.echo(f"  publishable key: {body['publishable_key']}")


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="API port (default TENDER_PORT or 8000)")] = None,
    simulator_port: Annotated[int, typer.Option(help="Simulator port")] = 8001,
) -> None:
    """Everything for development: embedded PostgreSQL, migrations, API, worker and simulator."""
    from tender.devserver import run_all

    settings = Settings()
    if port is not None:
        settings.port = port
    setup_logging(settings.log_level)
    sys.exit(run_all(settings, simulator_port=simulator_port))


def main() -> None:
    app()
