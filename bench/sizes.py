"""Tender's footprint in PostgreSQL per payment: bytes per table, connections per process, statements and
transactions per payment. Figures that the machine's load does not distort (unlike throughput), for
docs/scaling.md.

By default it starts a fresh `tender up` in a temporary data dir (bench/run.py's `tender_up`, with
TENDER_WEBHOOK_ALLOW_PRIVATE and TENDER_VELOCITY_CARD_DECLINES=0), or it joins a running Tender
(`--url`, `--admin-key`, `--database-url`; `--data-dir` too for the statement log of an embedded server). Then:
1. a merchant of its own and a webhook endpoint (`events: ["*"]`) on a local receiver answering 204;
2. N payments over the API (`-n`, default 5,000; `-c` at once): 70 % succeed (credit and debit cards), 20 % are
   declined, 10 % are authorized only and then captured; a refund of every fifth succeeded payment (half of them
   partial); every POST with its own Idempotency-Key, as merchants send them. It waits until every payment is
   final, every refund done and every webhook delivered;
3. per table: rows and bytes (pg_total_relation_size: heap, TOAST and indexes) added, and bytes per payment;
   inserts, updates and deletes per payment (pg_stat_user_tables); transactions, tuples and WAL bytes per payment
   (pg_stat_database, pg_current_wal_lsn); PostgreSQL's CPU per payment (/proc, fresh mode only);
4. connections per process and kind (pool or LISTEN), at peak during the load and idle after it: each backend
   is traced to its client process through its Unix socket's peer (`ss -xp`);
5. statements per payment (this PostgreSQL has no pg_stat_statements: its contrib modules are not shipped).
   The server logs every statement (log_min_duration_statement = 0, parameters never logged) for a smaller
   sample (`--sample`, default 500 payments of the same mix), each line traced to its process; an idle window
   before it gives the background rate (pumps polling), subtracted. Top statements by count per payment.

Prints tables and writes bench/results/sizes-<UTC stamp>.json.

    .venv/bin/python bench/sizes.py -n 1000        # ~2 min on the 2-core machine
    .venv/bin/python bench/sizes.py --workers 2    # the connections of two worker processes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from tender.config import Settings
from tender.runtime import resolve_database

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procstat
import run as bench_run

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=160)  # tables are wide; a pipe gets 80 columns otherwise
APP = "tender-sizes"  # our own connections: left out of every figure

# The mix, cycled by index: 7 successes (credit and debit), 2 declines, 1 authorized then captured.
SUCCEED = ("4242424242424242", "4242424242424242", "5555555555554444", "4242424242424242", "5555555555554444",
           "4000056655665556", "4242424242424242")  # fmt: skip
DECLINE = ("4000000000000002", "4000000000009995")
REFUND_EVERY = 5  # a refund of every fifth succeeded payment; every other one of them partial
STATS_FLUSH_SECONDS = 11.5  # a backend flushes its pending statistics at most 10 s after it goes idle (PG 15+)


# ---------------------------------------------------------------------------------------------------- load


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers 204 to everything and counts requests."""

    def __init__(self) -> None:
        count = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                count[0] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.count = count
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Sent:
    payments: list[str] = field(default_factory=list)
    to_capture: list[str] = field(default_factory=list)
    refunds: int = 0
    captures: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "POST /v1/payments 202": n


def payment_body(i: int, tag: str, rng: random.Random) -> dict[str, Any]:
    slot = i % 10
    number = SUCCEED[slot] if slot < 7 else DECLINE[slot - 7] if slot < 9 else "4242424242424242"
    card = {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123", "holder_name": "Size Bench"}
    return {
        "amount": rng.randint(100, 100_000),
        "currency": "BRL",
        "capture": slot != 9,
        "reference": f"sizes-{tag}-{i}",
        "description": f"Order {i}",
        "metadata": {"order": str(i)},
        "payment_method": {"type": "card", "card": card},
    }


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any], sent: Sent) -> dict[str, Any] | None:
    for _ in range(5):
        r = await client.post(path, json=body, headers={"Idempotency-Key": secrets.token_hex(16)})
        route = re.sub(r"/pay_\w+", "/{id}", path)
        sent.answers[f"POST {route} {r.status_code}"] += 1
        if r.status_code in (503, 429):
            await asyncio.sleep(1)
            continue
        return r.json() if r.is_success else None
    return None


async def send_payments(url: str, key: str, n: int, concurrency: int, tag: str, sent: Sent) -> None:
    rng = random.Random(tag)
    bodies = iter([payment_body(i, tag, rng) for i in range(n)])
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for body in bodies:
                data = await _post(client, "/v1/payments", body, sent)
                if data is not None:
                    sent.payments.append(data["id"])
                    if not body["capture"]:
                        sent.to_capture.append(data["id"])

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def capture_and_refund(url: str, key: str, db_url: str, concurrency: int, sent: Sent, ids: list[str]) -> None:
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        rows = conn.execute(
            "SELECT id, amount FROM payments WHERE id = ANY(%s) AND status = 'succeeded' ORDER BY id", (ids,)
        ).fetchall()
    refunds = [(pid, amount) for n, (pid, amount) in enumerate(rows) if n % REFUND_EVERY == 0]
    capture_ids = [pid for pid in sent.to_capture if pid in set(ids)]
    jobs: list[tuple[str, dict[str, Any]]] = [(f"/v1/payments/{pid}/capture", {}) for pid in capture_ids]
    for n, (pid, amount) in enumerate(refunds):
        jobs.append(("/v1/refunds", {"payment": pid, **({"amount": max(1, amount // 3)} if n % 2 else {})}))
    todo = iter(jobs)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30
    ) as client:

        async def worker() -> None:
            for path, body in todo:
                if await _post(client, path, body, sent) is not None:
                    if path == "/v1/refunds":
                        sent.refunds += 1
                    else:
                        sent.captures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def wait_for(db_url: str, what: str, sql: str, params: tuple[Any, ...], timeout: float) -> float:
    """Poll `sql` (a count) until 0; the seconds it took."""
    started = time.monotonic()
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        left = -1
        while time.monotonic() - started < timeout:
            row = conn.execute(sql, params).fetchone()
            left = int(row[0]) if row else 0
            if left == 0:
                return time.monotonic() - started
            time.sleep(0.5)
    console.print(f"[yellow]sizes: {left} {what} still pending after {timeout:.0f} s")
    return time.monotonic() - started


def drain(db_url: str, merchant: str, timeout: float, *, open_statuses: tuple[str, ...]) -> None:
    wait_for(
        db_url,
        "payments",
        "SELECT count(*) FROM payments WHERE merchant_id = %s AND status = ANY(%s)",
        (merchant, list(open_statuses)),
        timeout,
    )
    wait_for(
        db_url,
        "refunds",
        "SELECT count(*) FROM refunds WHERE merchant_id = %s AND status = 'pending'",
        (merchant,),
        timeout,
    )
    wait_for(
        db_url,
        "webhook deliveries",
        "SELECT count(*) FROM webhook_deliveries WHERE merchant_id = %s AND status = 'pending'",
        (merchant,),
        timeout,
    )


async def make_payments(
    url: str, key: str, db_url: str, n: int, concurrency: int, tag: str, drain_seconds: float
) -> tuple[Sent, dict[str, int]]:
    """The whole mix for `n` payments, drained: final statuses, refunds done, webhooks delivered."""
    sent = Sent()
    await send_payments(url, key, n, concurrency, tag, sent)
    merchant = _merchant_of(db_url, sent.payments[0]) if sent.payments else ""
    drain(db_url, merchant, drain_seconds, open_statuses=("processing",))
    await capture_and_refund(url, key, db_url, concurrency, sent, sent.payments)
    drain(db_url, merchant, drain_seconds, open_statuses=("processing", "requires_capture"))
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        statuses: dict[Any, Any] = dict(
            conn.execute(
                "SELECT status, count(*) FROM payments WHERE id = ANY(%s) GROUP BY status", (sent.payments,)
            ).fetchall()
        )
    return sent, {str(k): int(v) for k, v in statuses.items()}


def _merchant_of(db_url: str, payment_id: str) -> str:
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        row = conn.execute("SELECT merchant_id FROM payments WHERE id = %s", (payment_id,)).fetchone()
    return str(row[0]) if row else ""


# ----------------------------------------------------------------------------------------------- database


@dataclass
class Snapshot:
    tables: dict[str, tuple[int, int]]  # table -> (rows, bytes)
    writes: dict[str, tuple[int, int, int, int]]  # table -> (inserted, updated, hot updated, deleted)
    database: dict[str, int]  # pg_stat_database counters
    wal_lsn: str


def snapshot(db_url: str) -> Snapshot:
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        names = [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname"
            ).fetchall()
        ]
        tables: dict[str, tuple[int, int]] = {}
        for name in names:
            row = conn.execute(
                f'SELECT (SELECT count(*) FROM "{name}"), pg_total_relation_size(%s)',
                (f'public."{name}"',),
            ).fetchone()
            assert row is not None
            tables[name] = (int(row[0]), int(row[1]))
        writes = {
            str(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4]))
            for r in conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables"
                " WHERE schemaname = 'public'"
            ).fetchall()
        }
        db_row = conn.execute(
            "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted,"
            " blks_read, blks_hit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        assert db_row is not None
        keys = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated",
                "tup_deleted", "blks_read", "blks_hit")  # fmt: skip
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert lsn is not None
    return Snapshot(tables, writes, dict(zip(keys, map(int, db_row), strict=True)), str(lsn[0]))


def compact(db_url: str, tables: list[str]) -> dict[str, int]:
    """VACUUM FULL every table (rewritten without dead row versions: what the live rows take), then its bytes."""
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        sizes = {}
        for name in tables:
            conn.execute(f'VACUUM FULL public."{name}"')
            row = conn.execute("SELECT pg_total_relation_size(%s)", (f'public."{name}"',)).fetchone()
            sizes[name] = int(row[0]) if row else 0
    return sizes


def wal_bytes(db_url: str, before: str, after: str) -> int:
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (after, before)).fetchone()
    return int(row[0]) if row else 0


def server_settings(db_url: str) -> dict[str, str]:
    names = ("server_version", "max_connections", "superuser_reserved_connections", "shared_buffers")
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]


# -------------------------------------------------------------------------------------------- connections


def _socket_owners() -> tuple[dict[str, set[int]], dict[str, str], set[str]]:
    """From `ss -xp`: inode -> pids holding it, inode -> its peer's inode, and PostgreSQL's server-side inodes."""
    out = subprocess.run(["ss", "-xpH"], capture_output=True, text=True, check=False).stdout
    owners: dict[str, set[int]] = defaultdict(set)
    peer: dict[str, str] = {}
    server_side: set[str] = set()
    line_re = re.compile(r"^u_\S+\s+\S+\s+\d+\s+\d+\s+(\S+)\s+(\d+)\s+\S+\s+(\d+)\s*(.*)$")
    for line in out.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        local, inode, peer_inode, users = m.groups()
        peer[inode] = peer_inode
        owners[inode].update(int(p) for p in re.findall(r"pid=(\d+)", users))
        if ".s.PGSQL." in local:
            server_side.add(inode)
    return owners, peer, server_side


def backend_clients() -> dict[int, int]:
    """Backend pid -> the pid of the client process at the other end of its Unix socket."""
    owners, peer, server_side = _socket_owners()
    found: dict[int, int] = {}
    for inode in server_side:
        client_pids = owners.get(peer.get(inode, ""), set())
        for backend in owners.get(inode, set()):
            if client_pids:
                found[backend] = min(client_pids)
    return found


def process_roles(data_dir: str) -> dict[int, str]:
    """pid -> role (api, worker, simulator, ...) of every Tender process on this machine, by command line."""
    roles: dict[int, str] = {}
    for p in procstat.processes():
        role = procstat.role_of(p, data_dir)
        if role is not None and role != "postgres":
            roles[p.pid] = role
    return roles


@dataclass
class Connection:
    backend: int
    client: int | None
    role: str  # the client process's role, or "other"
    application: str


def connections(db_url: str, data_dir: str) -> list[Connection]:
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        rows = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name <> %s AND backend_type = 'client backend'",
            (APP,),
        ).fetchall()
    clients = backend_clients()
    roles = process_roles(data_dir)
    out = []
    for pid, app in rows:
        client = clients.get(int(pid))
        role = roles.get(client, "other") if client is not None else "other"
        out.append(Connection(int(pid), client, role, str(app)))
    return out


def connection_table(conns: list[Connection]) -> dict[str, dict[str, int]]:
    """role -> {application_name: connections, ..., "processes": distinct client pids}."""
    by_role: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pids: dict[str, set[int]] = defaultdict(set)
    for c in conns:
        by_role[c.role][c.application] += 1
        if c.client is not None:
            pids[c.role].add(c.client)
    return {role: {**apps, "processes": len(pids[role])} for role, apps in sorted(by_role.items())}


class PeakSampler:
    """Samples the connections every `every` seconds in a thread; keeps each (role, application)'s peak."""

    def __init__(self, db_url: str, data_dir: str, every: float = 0.5) -> None:
        self.db_url, self.data_dir, self.every = db_url, data_dir, every
        self.peak: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                for role, apps in connection_table(connections(self.db_url, self.data_dir)).items():
                    mine = self.peak.setdefault(role, {})
                    for app, count in apps.items():
                        mine[app] = max(mine.get(app, 0), count)
            self._stop.wait(self.every)


# ----------------------------------------------------------------------------------------- statement log

# log_line_prefix below: '%m [%p] %a: ' -> "2026-12-07 14:30:00.123 UTC [12345] tender: LOG:  duration: ..."
_LOG_RE = re.compile(
    r"^\S+ \S+ \S+ \[(\d+)\] (.*?): LOG:  duration: ([\d.]+) ms  (statement|parse|bind|execute)( [^:]*)?: (.*)$"
)
_PREFIX = "%m [%p] %a: "


@contextlib.contextmanager
def statement_log(db_url: str, log_file: Path) -> Iterator[dict[str, int]]:
    """Log every statement's duration (never its parameters) while inside; yields {"offset"} into the log."""
    settings = {
        "log_min_duration_statement": "0",
        "log_parameter_max_length": "0",
        "log_parameter_max_length_on_error": "0",
        "log_line_prefix": _PREFIX,
    }
    with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
        for name, value in settings.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(1.0)  # every backend reads the new settings before its next statement
    try:
        yield {"offset": log_file.stat().st_size}
    finally:
        with psycopg.connect(db_url, autocommit=True, application_name=APP) as conn:
            for name in settings:
                conn.execute(f"ALTER SYSTEM RESET {name}")
            conn.execute("SELECT pg_reload_conf()")


def normalize(sql: str) -> str:
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)  # literals (Tender binds its values; a few constants remain)
    sql = re.sub(r"\b\d+\b", "N", sql)
    sql = re.sub(r"IN \((?:\$\d+|N|\?)(?:, *(?:\$\d+|N|\?))*\)", "IN (...)", sql)
    return " ".join(sql.split())[:200]


@dataclass
class Statements:
    seconds: float
    count: int = 0
    server_ms: float = 0.0  # wall time the server logged (parse + bind + execute): load inflates it
    by_role: Counter[str] = field(default_factory=Counter)
    by_text: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, normalized SQL) -> count


def read_statements(
    log_file: Path, start: int, end: int, seconds: float, roles_of_backend: dict[int, str]
) -> Statements:
    """The statements logged between two offsets of the server log, by role and by normalized text."""
    found = Statements(seconds)
    with log_file.open("rb") as f:
        f.seek(start)
        text = f.read(end - start).decode(errors="replace")
    for record in re.split(r"\n(?!\t)", text):  # a statement's further lines start with a tab
        m = _LOG_RE.match(record.replace("\n\t", " "))
        if not m:
            continue
        pid, app, ms, kind, _name, sql = m.groups()
        found.server_ms += float(ms)
        if kind in ("parse", "bind") or app == APP:
            continue
        role = roles_of_backend.get(int(pid), "other")
        if app.startswith("tender-"):  # a LISTEN connection, named apart from the pool's "tender"
            role = f"{role} ({app})"
        found.count += 1
        found.by_role[role] += 1
        found.by_text[(role, normalize(sql))] += 1
    return found


# ------------------------------------------------------------------------------------------------ report


@dataclass
class Results:
    when: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    server: dict[str, str]
    payments: int
    statuses: dict[str, int]
    refunds: int
    captures: int
    webhook_requests: int
    answers: dict[str, int]
    tables: list[dict[str, Any]]
    database_per_payment: dict[str, float]
    postgres_cpu_ms_per_payment: float | None
    cpu_ms_per_payment: dict[str, float]
    connections_peak: dict[str, dict[str, int]]
    connections_idle: dict[str, dict[str, int]]
    statements: dict[str, Any] | None


def table_rows(before: Snapshot, after: Snapshot, compacted: dict[str, int], payments: int) -> list[dict[str, Any]]:
    rows = []
    for name, (count, size) in after.tables.items():
        count0, size0 = before.tables.get(name, (0, 0))
        w1 = after.writes.get(name, (0, 0, 0, 0))
        w0 = before.writes.get(name, (0, 0, 0, 0))
        ins, upd, hot, dele = (a - b for a, b in zip(w1, w0, strict=True))
        rows.append(
            {
                "table": name,
                "rows": count - count0,
                "bytes": size - size0,
                "bytes_per_payment": (size - size0) / payments,
                # live rows only, the run's share of the table's (the setup's few rows are in the same pages)
                "compacted_bytes_per_payment": compacted.get(name, 0) * (count - count0) / count / payments
                if count
                else 0.0,
                "rows_per_payment": (count - count0) / payments,
                "inserts_per_payment": ins / payments,
                "updates_per_payment": upd / payments,
                "hot_updates_per_payment": hot / payments,
                "deletes_per_payment": dele / payments,
                "total_rows": count,
                "total_bytes": size,
            }
        )
    return sorted(rows, key=lambda r: (-r["bytes"], r["table"]))


def print_report(res: Results) -> None:
    console.print(
        f"[bold]{res.payments}[/] payments: {', '.join(f'{k} {v}' for k, v in sorted(res.statuses.items()))};"
        f" {res.captures} captures, {res.refunds} refunds, {res.webhook_requests} webhook requests received"
    )
    t = Table(title="Bytes per payment, by table (heap + TOAST + indexes, added by the run)")
    columns = (
        "table",
        "rows",
        "rows/pay",
        "bytes",
        "bytes/pay",
        "live bytes/pay",
        "ins/pay",
        "upd/pay (HOT)",
        "del/pay",
    )
    for col in columns:
        t.add_column(col, justify="left" if col == "table" else "right")
    shown = [r for r in res.tables if r["bytes"] or r["rows"] or r["inserts_per_payment"] or r["updates_per_payment"]]
    for r in shown:
        t.add_row(
            r["table"],
            f"{r['rows']:,}",
            f"{r['rows_per_payment']:.2f}",
            f"{r['bytes']:,}",
            f"{r['bytes_per_payment']:,.0f}",
            f"{r['compacted_bytes_per_payment']:,.0f}",
            f"{r['inserts_per_payment']:.2f}",
            f"{r['updates_per_payment']:.2f} ({r['hot_updates_per_payment']:.2f})",
            f"{r['deletes_per_payment']:.2f}",
        )
    total = sum(r["bytes"] for r in res.tables)
    live = sum(r["compacted_bytes_per_payment"] for r in res.tables)
    t.add_row("all", "", "", f"{total:,}", f"{total / res.payments:,.0f}", f"{live:,.0f}", "", "", "", style="bold")
    console.print(t)

    d = Table(title="Database work per payment (pg_stat_database, WAL, /proc)")
    d.add_column("figure")
    d.add_column("per payment", justify="right")
    for k, v in res.database_per_payment.items():
        d.add_row(k, f"{v:,.2f}")
    for role, ms in res.cpu_ms_per_payment.items():
        d.add_row(f"CPU ms: {role} (busy machine: an upper bound)", f"{ms:.2f}")
    console.print(d)

    for title, table in (("at peak during the load", res.connections_peak), ("idle after it", res.connections_idle)):
        c = Table(title=f"PostgreSQL connections by client process, {title}")
        c.add_column("client role")
        c.add_column("processes", justify="right")
        c.add_column("connections by application_name")
        for role, apps in table.items():
            c.add_row(role, str(apps.get("processes", 0)),
                      ", ".join(f"{a} {n}" for a, n in sorted(apps.items()) if a != "processes"))  # fmt: skip
        console.print(c)
    console.print(f"server: {res.server}")

    if res.statements:
        s = res.statements
        console.print(
            f"[bold]Statements per payment[/] (sample of {s['payments']} payments, {s['seconds']:.1f} s;"
            f" background {s['idle_per_second']:.1f}/s subtracted): [bold]{s['per_payment']:.1f}[/]"
            f" ({', '.join(f'{r} {n:.1f}' for r, n in s['per_payment_by_role'].items())});"
            f" {s['payments_per_payment_claim'] or 0:.1f} payments per claim of the payment pump;"
            f" server-side time {s['server_ms_per_payment']:.2f} ms per payment (wall, inflated by load)"
        )
        top = Table(title="Top statements per payment")
        top.add_column("role")
        top.add_column("per payment", justify="right")
        top.add_column("statement")
        for row in s["top"][:25]:
            top.add_row(row["role"], f"{row['per_payment']:.2f}", row["sql"])
        console.print(top)


# -------------------------------------------------------------------------------------------------- main


@dataclass
class Target:
    url: str
    admin_key: str
    db_url: str
    data_dir: str  # "" when unknown: no statement log, connections by pid only
    up_pid: int | None


async def setup_merchant(target: Target, receiver: Receiver) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=target.url, timeout=30) as client:
        r = await client.post(
            "/admin/v1/merchants",
            json={"name": f"sizes-{datetime.now(UTC):%H%M%S}"},
            headers={"Authorization": f"Bearer {target.admin_key}"},
        )
        r.raise_for_status()
        merchant = r.json()
        r = await client.post(
            "/v1/webhook_endpoints",
            json={"url": receiver.url, "events": ["*"]},
            headers={"Authorization": f"Bearer {merchant['secret_key']}"},
        )
        if r.status_code != 201:
            raise SystemExit(
                f"sizes: the webhook endpoint was refused ({r.status_code}): set TENDER_WEBHOOK_ALLOW_PRIVATE"
            )
    return merchant["id"], merchant["secret_key"]


def measure(target: Target, args: argparse.Namespace) -> Results:
    receiver = Receiver()
    try:
        merchant, key = asyncio.run(setup_merchant(target, receiver))
        server = server_settings(target.db_url)
        time.sleep(STATS_FLUSH_SECONDS)  # the setup's statistics flushed: not counted
        before = snapshot(target.db_url)
        cpu0 = procstat.sample(target.up_pid, target.data_dir) if target.up_pid else {}
        console.print(f"sizes: {args.payments} payments, {args.concurrency} at once ...")
        with PeakSampler(target.db_url, target.data_dir) as sampler:
            sent, statuses = asyncio.run(
                make_payments(target.url, key, target.db_url, args.payments, args.concurrency, "main", args.timeout)
            )
        cpu1 = procstat.sample(target.up_pid, target.data_dir) if target.up_pid else {}
        console.print("sizes: drained; waiting for the statistics to be flushed ...")
        time.sleep(STATS_FLUSH_SECONDS)
        after = snapshot(target.db_url)
        webhook_requests = receiver.count[0]
        console.print("sizes: VACUUM FULL of every table, for the live rows' bytes ...")
        compacted = compact(target.db_url, list(after.tables))
        idle = connection_table(connections(target.db_url, target.data_dir))
        n = len(sent.payments)
        per_payment = {
            k: (after.database[k] - before.database[k]) / n for k in after.database if not k.startswith("blks")
        }
        per_payment["WAL bytes"] = wal_bytes(target.db_url, before.wal_lsn, after.wal_lsn) / n
        cpu = procstat.cpu_by_role(cpu0, cpu1) if target.up_pid else {}
        cpu_ms = {role: 1000 * s / n for role, s in sorted(cpu.items())}
        statements = None
        log_file = Path(target.data_dir) / "pg" / "log" if target.data_dir else None
        if args.sample and log_file is not None and log_file.exists():
            statements = statement_sample(target, key, args, log_file)
        elif args.sample:
            console.print("[yellow]sizes: no server log known (--data-dir): statements per payment not counted")
        return Results(
            when=datetime.now(UTC).isoformat(),
            machine={"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
            settings={
                "payments": args.payments,
                "concurrency": args.concurrency,
                "workers": args.workers,
                "sample": args.sample,
                "merchant": merchant,
            },
            server=server,
            payments=n,
            statuses=statuses,
            refunds=sent.refunds,
            captures=sent.captures,
            webhook_requests=webhook_requests,
            answers=dict(sent.answers),
            tables=table_rows(before, after, compacted, n),
            database_per_payment=per_payment,
            postgres_cpu_ms_per_payment=cpu_ms.get("postgres"),
            cpu_ms_per_payment=cpu_ms,
            connections_peak=dict(sorted(sampler.peak.items())),
            connections_idle=idle,
            statements=statements,
        )
    finally:
        receiver.close()


def statement_sample(target: Target, key: str, args: argparse.Namespace, log_file: Path) -> dict[str, Any]:
    console.print(f"sizes: statement sample: {args.idle_seconds:.0f} s idle, then {args.sample} payments ...")
    with statement_log(target.db_url, log_file) as pos:
        time.sleep(args.idle_seconds)
        idle_end = log_file.stat().st_size
        started = time.monotonic()
        sent, _ = asyncio.run(
            make_payments(target.url, key, target.db_url, args.sample, args.concurrency, "sample", args.timeout)
        )
        seconds = time.monotonic() - started
        end = log_file.stat().st_size
        backends = {c.backend: c.role for c in connections(target.db_url, target.data_dir)}
    idle = read_statements(log_file, pos["offset"], idle_end, args.idle_seconds, backends)
    busy = read_statements(log_file, idle_end, end, seconds, backends)
    n = len(sent.payments)
    rate = idle.count / idle.seconds if idle.seconds else 0.0
    idle_by_role = {r: c / idle.seconds for r, c in idle.by_role.items()}
    by_role = {r: max(0.0, (c - idle_by_role.get(r, 0) * seconds) / n) for r, c in sorted(busy.by_role.items())}
    claims = sum(c for (role, sql), c in busy.by_text.items() if sql.startswith('UPDATE "payments" SET next_run_at'))
    top = [
        {"role": role, "sql": sql, "count": count, "per_payment": count / n}
        for (role, sql), count in busy.by_text.most_common(60)
    ]
    return {
        "payments": n,
        "seconds": seconds,
        "statements": busy.count,
        "idle_per_second": rate,
        "idle_per_second_by_role": idle_by_role,
        "idle_top": [
            {"role": r, "sql": s, "per_second": c / idle.seconds} for (r, s), c in idle.by_text.most_common(15)
        ],
        "per_payment": max(0.0, busy.count - rate * seconds) / n,
        "per_payment_by_role": by_role,
        "server_ms_per_payment": busy.server_ms / n,
        "payments_per_payment_claim": n / claims if claims else None,  # the worker's batches: small at low rates
        "top": top,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Tender's PostgreSQL footprint per payment")
    parser.add_argument("-n", "--payments", type=int, default=5000)
    parser.add_argument("-c", "--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the fresh `tender up`")
    parser.add_argument("--sample", type=int, default=500, help="payments of the statement sample (0: none)")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle window of the statement sample")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each drain")
    parser.add_argument("--url", help="a running Tender's API (default: start a fresh `tender up`)")
    parser.add_argument("--admin-key", default=os.environ.get("TENDER_ADMIN_KEY"))
    parser.add_argument("--database-url", help="the running Tender's database")
    parser.add_argument("--data-dir", default="", help="the running `tender up`'s data dir (its server log)")
    args = parser.parse_args()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    if args.url:
        if not (args.admin_key and args.database_url):
            parser.error("--url needs --admin-key and --database-url")
        res = measure(Target(args.url, args.admin_key, args.database_url, args.data_dir, None), args)
    else:
        os.environ["TENDER_WEBHOOK_ALLOW_PRIVATE"] = "true"
        os.environ["TENDER_VELOCITY_CARD_DECLINES"] = "0"  # the mix declines each test card many times
        with bench_run.tender_up(args.workers, out) as (url, data_dir, proc):
            admin_key = (data_dir / "admin.key").read_text().strip()
            # Joined like any Tender process does; our handle is given back before `tender up` stops, so that its
            # last process stops the server before the data dir is removed (a handle still held then would leave
            # the server running on a deleted dir).
            resolved = resolve_database(Settings(data_dir=data_dir, database_url=None))
            try:
                res = measure(Target(url, admin_key, resolved.url, str(data_dir), proc.pid), args)
            finally:
                if resolved.embedded is not None:
                    resolved.embedded.cleanup()
    print_report(res)
    path = out / f"sizes-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(asdict(res), indent=2, default=str))
    console.print(f"Written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
