"""The `tender` command: up, api, worker, simulator, migrate, merchant."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from tender.config import Settings
from tender.runtime import resolve_database, setup_logging
from tender.simulator.command import simulator_command

app = typer.Typer(help="Tender: a self-hosted payment service provider.", no_args_is_help=True)
merchant_app = typer.Typer(help="Manage merchants.", no_args_is_help=True)
app.add_typer(merchant_app, name="merchant")
dlq_app = typer.Typer(help="Dead letters: work that exhausted its automatic retries.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
processor_app = typer.Typer(help="Processors: circuit breakers, pause and resume.", no_args_is_help=True)
app.add_typer(processor_app, name="processor")
demo_app = typer.Typer(help="Try Tender as a merchant would, against a running `tender up`.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
user_app = typer.Typer(help="Dashboard users (they sign in at /dashboard/login).", no_args_is_help=True)
app.add_typer(user_app, name="user")
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
        # The client address is the connection's: X-Forwarded-For is believed only from TENDER_TRUSTED_PROXIES
        # (services/velocity.py), not from uvicorn's default of any proxy on 127.0.0.1.
        proxy_headers=False,
    )


@app.command()
def worker() -> None:
    """Run a background worker (any number may share one database)."""
    from tender.bootstrap import build
    from tender.gc_tuning import tune_for_server
    from tender.worker.runner import Worker

    settings = Settings()
    setup_logging(settings.log_level)
    db = resolve_database(settings)

    async def main() -> None:
        container = build(settings, db.url)
        await container.open()
        tune_for_server()
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


@merchant_app.command("roll-keys")
def merchant_roll_keys(
    merchant_id: str,
    expire_old_in: Annotated[
        int, typer.Option(min=0, help="Seconds the old keys keep working (default 0: they stop at once)")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON")] = False,
) -> None:
    """Give a merchant new API keys (shown once); the old ones stop working after --expire-old-in seconds,
    in every API process."""
    from tender.errors import TenderError
    from tender.services import merchants
    from tender.services.objects import iso, merchant_object
    from tender.services.validation import parse

    try:
        seconds = parse(merchants.RollKeysRequest, {"expire_old_in": expire_old_in}).expire_old_in
        rolled = _run_with_database(lambda db: merchants.roll_keys(db, merchant_id, seconds))
    except TenderError as exc:
        typer.echo(f"tender: {exc.message}", err=True)
        raise typer.Exit(1) from None
    body = {
        **merchant_object(rolled.merchant),
        "secret_key": rolled.secret_key,
        "publishable_key": rolled.publishable_key,
        "old_keys_expire_at": iso(rolled.old_keys_expire_at),
    }
    if as_json:
        typer.echo(json.dumps(body))
        return
    typer.echo(f"merchant {body['id']} ({body['name']}): new keys (shown once)")
    typer.echo(f"  secret key:      {body['secret_key']}")
    typer.echo(f"  publishable key: {body['publishable_key']}")
    typer.echo(f"the old keys stop working at {body['old_keys_expire_at']}")


@merchant_app.command("routing")
def merchant_routing(
    merchant_id: str,
    set_from: Annotated[
        str | None,
        typer.Option("--set", help='A JSON file: {"rules": [...]} (or the list alone) replaces the merchant\'s rules'),
    ] = None,
) -> None:
    """Print a merchant's routing rules as JSON (GET /admin/v1/merchants/{id}/routing), or replace them first with
    --set (the same checks as the PUT: exit 1 naming the field, nothing changed)."""
    from pathlib import Path

    from tender.domain.errors import DomainError
    from tender.errors import TenderError
    from tender.services import routing

    payload: Any = None
    if set_from is not None:
        try:
            payload = json.loads(Path(set_from).read_text())
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read it as JSON ({type(exc).__name__})", param_hint="--set") from None
        if isinstance(payload, list):
            payload = {"rules": payload}

    async def work(db: Database, settings: Settings, names: list[str]) -> dict[str, Any]:
        default = [settings.default_processor]
        if payload is None:
            return await routing.get(db, merchant_id, default=default)
        return await routing.put(db, merchant_id, payload, on=names, default=default)

    try:
        body = _run_with_processors(work)
    except (TenderError, DomainError) as exc:
        typer.echo(f"tender: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(body, indent=2))


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
    for column in ("id", "kind", "object", "operation", "processor", "status", "tries", "last error", "created"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["object_id"],
            r["operation"],
            r["processor"] or "",
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
def settle(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="YYYY-MM-DD",
            help="Settle payables due by this date. Default: today in TENDER_BUSINESS_TIMEZONE.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Allow an --as-of after today: pays merchants before money is due.")
    ] = False,
) -> None:
    """Settle due payables now: one settlement per merchant, currency and day (the worker does it by itself)."""
    import re
    from datetime import date

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
    from rich.table import Table

    from tender.domain.money import format_amount
    from tender.errors import TenderError
    from tender.services import settlement

    settings = Settings()
    if as_of is None:
        day = settlement.business_today(settings.business_tz)
    else:
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", as_of):
                raise ValueError(as_of)
            day = date.fromisoformat(as_of)
        except ValueError:
            raise typer.BadParameter(f"{as_of!r} is not a date: use YYYY-MM-DD", param_hint="--as-of") from None
    try:
        settlement.check_as_of(day, settings.business_tz, force=force)
    except TenderError as exc:
        typer.echo(f"tender: --as-of {exc.message.removeprefix('as_of: ')}; pass --force to do it anyway", err=True)
        raise typer.Exit(2) from None
    if force and day > settlement.business_today(settings.business_tz):
        typer.echo(f"tender: settling as of {day}, after today (--force)", err=True)

    async def work(db: Database) -> settlement.SettleRound:
        groups, payables = await settlement.count_due(db, day)
        if groups == 0:  # nothing to show progress of (a settle of what became due meanwhile still runs)
            return await settlement.settle_all(db, day, max_groups=settings.settle_batch_groups)
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("groups, {task.fields[payables]} of ~{task.fields[due]} payables"),
            console=Console(stderr=True),
        )
        with progress:
            task = progress.add_task(f"settling as of {day}", total=groups, payables=0, due=payables)
            settled = 0

            def on_group(group: settlement.SettledGroup) -> None:
                nonlocal settled
                settled += group.payables
                progress.update(task, advance=1, payables=settled)

            return await settlement.settle_all(db, day, max_groups=settings.settle_batch_groups, on_group=on_group)

    result = _run_with_database(work)
    if not result.settled:
        typer.echo(f"nothing due as of {day}")
        return
    made: dict[str, list[settlement.SettledGroup]] = {}
    for group in result.settled:
        made.setdefault(group.settlement.id, []).append(group)
    table = Table(title=f"settlements as of {day}")
    for column in ("settlement", "merchant", "currency", "date", "payables", "amount"):
        table.add_column(column, overflow="fold", justify="right" if column in ("payables", "amount") else "left")
    for settlement_id, groups_of in made.items():
        s = groups_of[0].settlement
        table.add_row(
            settlement_id,
            groups_of[0].merchant_id,
            s.currency,
            s.date.isoformat(),
            str(sum(g.payables for g in groups_of)),
            format_amount(sum(g.amount for g in groups_of), s.currency),
        )
    Console().print(table)
    typer.echo(f"settled {result.payables} payables into {len(made)} settlements as of {day}")


@app.command()
def reconcile(
    processor: Annotated[str, typer.Option("--processor", metavar="NAME", help="A processor that is on")],
    day: Annotated[
        str, typer.Option("--date", metavar="YYYY-MM-DD", help="The business day (TENDER_BUSINESS_TIMEZONE)")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Compare Tender's payments and refunds at a processor with the processor's own records of a day.

    Prints matched, missing in Tender, missing at the processor and mismatched (amount, currency, status), and
    stores the run (GET /admin/v1/reconciliations). Exit 0 when all match, 1 when anything is off (or the
    processor's records could not be read), 2 on a usage error (a processor that is not on, a bad date)."""
    from rich.console import Console
    from rich.table import Table

    from tender.errors import TenderError
    from tender.processors import registry
    from tender.services import reconciliation

    settings = Settings()
    try:
        when = reconciliation.parse_day(day, settings.business_tz)
    except TenderError as exc:
        raise typer.BadParameter(exc.message.removeprefix("date: "), param_hint="--date") from None
    try:
        processors = registry.build(settings)
    except ValueError as exc:
        typer.echo(f"tender: {exc}", err=True)
        raise typer.Exit(2) from None
    chosen = processors.get(processor)
    if chosen is None:
        on = ", ".join(sorted(processors)) or "none"
        raise typer.BadParameter(f"not a processor that is on (on: {on})", param_hint="--processor")

    async def work(db: Database) -> reconciliation.RunResult:
        try:
            return await reconciliation.run(db, chosen, when, settings.business_tz)
        finally:
            for p in processors.values():
                await p.aclose()

    result = _run_with_database(work)
    if result.report is None:
        typer.echo(f"tender: reconciliation {result.run_id} failed: {result.error}", err=True)
        raise typer.Exit(1)
    report = reconciliation.report_object(result.report)
    if as_json:
        typer.echo(json.dumps(report))
        raise typer.Exit(0 if result.report.clean else 1)
    console = Console()
    console.print(f"reconciliation {result.run_id}: {processor} on {when}: {report['matched']} matched")
    titles = {
        "missing_in_tender": "missing in Tender (the processor has it, Tender does not)",
        "missing_at_processor": "missing at the processor (Tender has it, the processor does not)",
        "mismatched": "mismatched",
    }
    for key, title in titles.items():
        rows = report[key]
        if not rows:
            continue
        table = Table(title=f"{title}: {len(rows)}")
        for column in ("type", "reference", "processor id", "payment", "amount", "currency", "status", "differences"):
            table.add_column(column, overflow="fold")
        for r in rows:
            differences = "; ".join(
                f"{d['field']}: tender {d['tender']}, processor {d['processor']}" for d in r.get("differences", [])
            )
            table.add_row(
                r["type"],
                r["reference"] or "",
                r["processor_id"] or "",
                r["payment"] or "",
                str(r["amount"]),
                r["currency"],
                r["status"],
                differences,
            )
        console.print(table)
    if result.report.clean:
        console.print("[green]all records match[/]")
        return
    raise typer.Exit(1)


@app.command()
def balance(merchant_id: str) -> None:
    """A merchant's balance per currency: the ledger's beside its payables' sums. Exit 1 if they differ."""
    from rich.console import Console
    from rich.table import Table

    from tender.domain.money import format_amount
    from tender.errors import TenderError
    from tender.services import balance as balances

    try:
        rows = _run_with_database(lambda db: balances.balance_report(db, merchant_id))
    except TenderError as exc:
        typer.echo(f"tender: {exc.message}", err=True)
        raise typer.Exit(1) from None
    if not rows:
        typer.echo(f"{merchant_id} has no money yet")
        return
    table = Table(title=f"balance of {merchant_id}")
    for column in ("currency", "waiting_funds", "available", "payables waiting_funds", "payables paid", "check"):
        table.add_column(column, overflow="fold", justify="left" if column in ("currency", "check") else "right")
    for r in rows:
        c = r.currency
        table.add_row(
            c,
            format_amount(r.waiting_funds, c),
            format_amount(r.available, c),
            format_amount(r.payables_waiting_funds, c),
            format_amount(r.payables_paid, c),
            "ok" if r.matches else "[bold red]MISMATCH[/]",
        )
    Console().print(table)
    if not all(r.matches for r in rows):
        typer.echo("the ledger and the payables differ: run `tender ledger verify`", err=True)
        raise typer.Exit(1)


@ledger_app.command("verify")
def ledger_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Check every entry balances, every account's balance equals its postings, and balances equal payables.

    Exit code 0 when all holds, 1 when anything is off."""
    from rich.console import Console
    from rich.table import Table

    from tender.services import ledger
    from tender.services.objects import ledger_verification_object

    report = ledger_verification_object(_run_with_database(ledger.verify))
    if as_json:
        typer.echo(json.dumps(report))
        raise typer.Exit(0 if report["balanced"] else 1)
    console = Console()
    console.print(
        f"checked {report['entries']} entries, {report['lines']} lines, {report['accounts']} accounts, "
        f"{report['payables']} payables"
    )
    problems = {
        "unbalanced entries": report["unbalanced_entries"],
        "entries without lines": [{"entry": e} for e in report["entries_without_lines"]],
        "drifted accounts (stored balance != sum of postings)": report["drifted_accounts"],
        "balances != payables (as shown to the merchant)": report["balance_mismatches"],
    }
    for title, rows in problems.items():
        if not rows:
            continue
        table = Table(title=title)
        for column in rows[0]:
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(*(str(v) for v in r.values()))
        console.print(table)
    if report["balanced"]:
        console.print("[green]ledger balanced[/]: every entry balances and every balance matches")
        return
    console.print("[bold red]ledger NOT balanced[/]")
    raise typer.Exit(1)


def _run_with_processors(work: Callable[[Database, Settings, list[str]], Awaitable[T]]) -> T:
    """Run one service call with the database and the names of the processors that are on (from Settings)."""
    from tender.bootstrap import build

    settings = Settings()
    setup_logging("WARNING")
    resolved = resolve_database(settings)

    async def main() -> T:
        container = build(settings, resolved.url)
        await container.open()
        try:
            return await work(container.db, settings, list(container.processors))
        finally:
            await container.close()

    return asyncio.run(main())


@processor_app.command("list")
def processor_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON (GET /admin/v1/processors)")] = False,
) -> None:
    """The processors that are on: circuit state, pause, failures."""
    from rich.console import Console
    from rich.table import Table

    from tender.services import processor_health

    async def work(db: Database, settings: Settings, names: list[str]) -> list[dict[str, Any]]:
        found = await processor_health.statuses(db, settings.circuit_policy, names)
        return [processor_health.processor_object(s) for s in found]

    data = _run_with_processors(work)
    if as_json:
        typer.echo(json.dumps({"object": "list", "data": data, "has_more": False, "url": "/admin/v1/processors"}))
        return
    table = Table(title="processors")
    columns = ("name", "status", "paused", "failures in a row", "failure rate", "calls in window", "retry at", "reason")
    for column in columns:
        table.add_column(column, overflow="fold")
    for p in data:
        table.add_row(
            p["name"],
            p["status"],
            "yes" if p["paused"] else "no",
            str(p["consecutive_failures"]),
            p["failure_rate"],
            str(p["calls_in_window"]),
            p["retry_at"] or "",
            p["paused_reason"] or "",
        )
    Console().print(table)


def _set_paused(name: str, *, paused: bool, reason: str | None) -> dict[str, Any]:
    from tender.errors import TenderError
    from tender.services import processor_health

    async def work(db: Database, settings: Settings, names: list[str]) -> dict[str, Any]:
        processor_health.check_on(names, name)
        status = await processor_health.set_paused(db, settings.circuit_policy, name, paused=paused, reason=reason)
        return processor_health.processor_object(status)

    try:
        return _run_with_processors(work)
    except TenderError as exc:
        typer.echo(f"tender: {exc.message}", err=True)
        raise typer.Exit(1) from None


@processor_app.command("pause")
def processor_pause(
    name: str,
    reason: Annotated[str | None, typer.Option(help="Why (shown in the list and the event)")] = None,
) -> None:
    """Pause a processor: new payments go to the next processor of their route, or wait. Payments already
    there are still looked up, captured and refunded."""
    if reason is not None and not 0 < len(reason) <= 500:
        raise typer.BadParameter("at most 500 characters, not empty", param_hint="--reason")
    body = _set_paused(name, paused=True, reason=reason)
    typer.echo(f"processor {body['name']} paused" + (f" ({body['paused_reason']})" if body["paused_reason"] else ""))


@processor_app.command("resume")
def processor_resume(name: str) -> None:
    """Resume a paused processor."""
    body = _set_paused(name, paused=False, reason=None)
    typer.echo(f"processor {body['name']} resumed (circuit {body['status']})")


@demo_app.command("checkout")
def demo_checkout(
    amount: Annotated[int, typer.Option(help="Minor units")] = 2500,
    currency: Annotated[str, typer.Option()] = "BRL",
    description: Annotated[str, typer.Option()] = "Demo order",
    api_url: Annotated[
        str | None, typer.Option(help="Default: TENDER_PUBLIC_URL or http://TENDER_HOST:TENDER_PORT")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="TENDER_DEMO_KEY",
            help="A secret key (better from the environment: `ps` shows command lines to every user);"
            " default: the demo merchant's, saved by `tender up`",
        ),
    ] = None,
) -> None:
    """Open a checkout session over the API, as a merchant's backend would, and print its page's URL."""
    import time

    import httpx

    settings = Settings()
    base = (api_url or settings.base_url).rstrip("/")
    if key is None:
        saved = settings.data_dir.expanduser() / "demo-merchant.json"
        if not saved.exists():
            typer.echo(f"No demo merchant in {saved}: run `make run` (or `tender up`) first, or pass --key.", err=True)
            raise typer.Exit(2)
        key = json.loads(saved.read_text())["secret_key"]
    body = {
        "amount": amount,
        "currency": currency,
        "reference": f"demo-{time.time_ns()}",
        "description": description,
        "success_url": f"{base}/demo/shop",
        "cancel_url": f"{base}/demo/shop?canceled=1",
    }
    try:
        r = httpx.post(f"{base}/v1/checkout/sessions", json=body, headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        typer.echo(f"Cannot reach Tender at {base}: {exc}. Is `make run` running?", err=True)
        raise typer.Exit(2) from None
    if r.status_code not in (200, 201):
        typer.echo(f"Tender answered {r.status_code}: {r.text}", err=True)
        raise typer.Exit(1)
    session = r.json()
    typer.echo(f"Checkout session {session['id']} for {amount} {currency} (minor units); open in a browser:")
    typer.echo(f"  {session['url']}")
    typer.echo(
        "Test cards: 4242424242424242 succeeds, 4000000000009995 is declined, 4000002760003184 asks for 3-D Secure."
    )


@demo_app.command("subscription")
def demo_subscription(
    amount: Annotated[int, typer.Option(help="Minor units per month")] = 4990,
    currency: Annotated[str, typer.Option()] = "BRL",
    months: Annotated[int, typer.Option(min=1, max=36, help="How far to advance the test clock")] = 12,
    card: Annotated[
        str, typer.Option(help="A test card; 4000000000001117 succeeds once, then dunning shows")
    ] = "4242424242424242",
    api_url: Annotated[
        str | None, typer.Option(help="Default: TENDER_PUBLIC_URL or http://TENDER_HOST:TENDER_PORT")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(envvar="TENDER_DEMO_KEY", help="A secret key; default: the demo merchant's, saved by `tender up`"),
    ] = None,
) -> None:
    """A customer on a test clock with a saved card, a monthly subscription, the clock advanced a month at a time
    (renewals and dunning run at once, through a running `tender up`'s worker), and its invoices as a table."""
    from datetime import UTC, datetime

    import httpx
    from rich.console import Console
    from rich.table import Table

    from tender.domain.money import format_amount
    from tender.domain.periods import period_start

    settings = Settings()
    base = (api_url or settings.base_url).rstrip("/")
    if key is None:
        saved = settings.data_dir.expanduser() / "demo-merchant.json"
        if not saved.exists():
            typer.echo(f"No demo merchant in {saved}: run `make run` (or `tender up`) first, or pass --key.", err=True)
            raise typer.Exit(2)
        key = json.loads(saved.read_text())["secret_key"]
    start = datetime.now(UTC).replace(microsecond=0)

    def call(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = client.post(path, json=body) if body is not None else client.get(path)
        if r.status_code not in (200, 201):
            typer.echo(f"Tender answered {r.status_code} to {path}: {r.text}", err=True)
            raise typer.Exit(1)
        return dict(r.json())

    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            clock = call(client, "/v1/test_clocks", {"frozen_time": start.isoformat(), "name": "tender demo"})["id"]
            method = {"number": card, "exp_month": 12, "exp_year": start.year + 5, "holder_name": f"Demo {clock[-6:]}"}
            pm = call(client, "/v1/payment_methods", {"type": "card", "card": method})["id"]
            customer = call(
                client, "/v1/customers", {"email": "demo@example.com", "test_clock": clock, "payment_method": pm}
            )["id"]
            body = {"customer": customer, "amount": amount, "currency": currency, "interval": "month"}
            sub = call(client, "/v1/subscriptions", body)
            typer.echo(f"{sub['id']}: {customer} on test clock {clock}, advancing {months} months...")
            anchor = datetime.fromisoformat(sub["billing_cycle_anchor"])
            for month in range(1, months + 1):  # a month at a time, as a merchant's test would
                to = period_start(anchor, month, "month", 1, UTC)
                call(client, f"/v1/test_clocks/{clock}/advance", {"frozen_time": to.isoformat()})
            sub = call(client, f"/v1/subscriptions/{sub['id']}")
            invoices = call(client, f"/v1/invoices?subscription={sub['id']}&limit=100")["data"]
    except httpx.HTTPError as exc:
        typer.echo(f"Cannot reach Tender at {base}: {exc}. Is `make run` running?", err=True)
        raise typer.Exit(2) from None
    table = Table(title=f"invoices of {sub['id']} ({sub['status']})")
    for column in ("invoice", "period", "amount", "status", "attempts", "payment"):
        table.add_column(column, justify="right" if column in ("amount", "attempts") else "left")
    for i in reversed(invoices):
        period = f"{i['period_start'][:10]} .. {i['period_end'][:10]}"
        money = format_amount(i["amount_due"], i["currency"])
        table.add_row(i["id"], period, money, i["status"], str(i["attempt_count"]), i["payment"])
    Console(width=140).print(table)


@user_app.command("create")
def user_create(
    merchant: Annotated[str, typer.Option("--merchant", help="The merchant whose data the user sees")],
    email: Annotated[str, typer.Option("--email", help="The user's email: the sign-in name")],
    password: Annotated[
        str | None,
        typer.Option("--password", help="At least 10 characters; omitted: a random one is printed, once"),
    ] = None,
) -> None:
    """Create a dashboard user of a merchant (exit 1 naming the field when refused: an unknown merchant, an email
    already taken, a short password)."""
    from tender.errors import TenderError
    from tender.services import dashboard_users

    try:
        made = _run_with_database(lambda db: dashboard_users.create_user(db, merchant, email, password))
    except TenderError as exc:
        typer.echo(f"tender: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"user {made.user.id} ({made.user.email}) of merchant {made.user.merchant_id}")
    if made.password is not None:
        typer.echo(f"  one-time password: {made.password}  (shown once; it cannot be looked up later)")


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="API port (default TENDER_PORT or 8000)")] = None,
    simulator_port: Annotated[
        int | None, typer.Option(help="Simulator port (default: the API's + 1 when free, else any free port)")
    ] = None,
    stripe: Annotated[
        bool,
        typer.Option(
            "--stripe",
            help="Also run localstripe (a Stripe emulator) and wire the stripe processor and its webhooks to it",
        ),
    ] = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes")] = 1,
    api_workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="API server processes [default: one per core, at most 4]")
    ] = None,
) -> None:
    """Everything for development: embedded PostgreSQL, migrations, API, worker and simulator (and, with
    --stripe, a local Stripe emulator)."""
    from tender.devserver import default_api_workers, run_all

    settings = Settings()
    if port is not None:
        settings.port = port
    setup_logging(settings.log_level)
    api_workers = api_workers or default_api_workers()
    sys.exit(run_all(settings, simulator_port=simulator_port, stripe=stripe, workers=workers, api_workers=api_workers))


def main() -> None:
    app()
