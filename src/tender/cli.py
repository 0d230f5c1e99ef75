"""The `tender` command: up, api, worker, simulator, migrate, merchant."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from tender.config import Settings
from tender.runtime import resolve_database, setup_logging
from tender.simulator.command import simulator_command

app = typer.Typer(help="Tender: a self-hosted payment service provider.", no_args_is_help=True)
merchant_app = typer.Typer(help="Manage merchants.", no_args_is_help=True)
app.add_typer(merchant_app, name="merchant")
dlq_app = typer.Typer(help="Dead letters: work that exhausted its automatic retries.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.command("simulator", help="Run the card-acquirer simulator service.")(simulator_command)

log = logging.getLogger("tender")
T = TypeVar("T")

if TYPE_CHECKING:
    from tender.store.db import Database


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


def _run_with_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run one service call against the configured database, for commands that are not servers."""
    from tender.store.db import Database

    settings = Settings()
    setup_logging("WARNING")
    resolved = resolve_database(settings)

    async def main() -> T:
        database = Database(resolved.url, min_size=1, max_size=2)
        await database.open()
        try:
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(main())


@dlq_app.command("list")
def dlq_list(
    status: Annotated[str | None, typer.Option(help="open, retried or resolved; --status '' for all")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=100)] = 50,
) -> None:
    """Show dead letters as a table."""
    from rich.console import Console
    from rich.table import Table

    from tender.errors import TenderError
    from tender.services import dead_letters

    try:
        rows, has_more = _run_with_database(
            lambda db: dead_letters.list_dead_letters(db, status=status or None, limit=limit)
        )
    except TenderError as exc:
        raise typer.BadParameter(exc.message) from None
    table = Table(title=f"dead letters ({status or 'all'})")
    for column in ("id", "kind", "object", "operation", "status", "tries", "last error", "created"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["object_id"],
            r["operation"],
            r["status"],
            str(r["tries"]),
            (r["last_error"] or "")[:60],
            r["created"],
        )
    Console().print(table)
    if has_more:
        typer.echo(f"(more than {limit}; use --limit)")


@dlq_app.command("retry")
def dlq_retry(dead_letter_id: str) -> None:
    """Give a dead letter's work a fresh set of tries, due at once."""
    from tender.errors import TenderError
    from tender.services import dead_letters

    try:
        row = _run_with_database(lambda db: dead_letters.retry(db, dead_letter_id))
    except TenderError as exc:
        typer.echo(f"tender: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{row['id']}: {row['kind']} {row['object_id']} {row['operation']} is due again ({row['status']})")


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
