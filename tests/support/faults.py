"""What the fault tests share (tests/faults/): Tender's real processes started with a faulty simulator and
fast retries, the payments 40 clients send, workers SIGKILLed by `Chaos`, waiting until every payment is
final, the simulator's record as the judge, and the figures each test reports (FIGURES_PROPERTY: shown in
the final summary by tests/faults/conftest.py and written to test-artifacts/faults.json)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.processes import Process, Stack, environment, wait_until_healthy
from tests.support.processors import forget_health
from tests.support.serve import free_port

FIGURES_PROPERTY = "fault_figures"
CONCURRENCY = 40
KILL_INTERVAL_SECONDS = (1.5, 4.0)
KILLS_WHILE_DRAINING = 3  # the chaos goes on this many kills past the last accept (or until drained)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FINAL = {"succeeded", "failed", "requires_capture"}

SIMULATOR_FAULTS = [
    "--error-rate", "0.2",  # 503 before charging: transient, retried
    "--timeout-rate", "0.1",  # charged, answered after 1.5 s > Tender's 1 s timeout: unknown, looked up
    "--timeout-seconds", "1.5",
    "--drop-rate", "0.05",  # connection cut, before or after charging: unknown, looked up
    "--latency-ms", "2",
    "--latency-jitter-ms", "10",
    "--seed", "1",
]  # fmt: skip
WORKER_ENV = {
    "TENDER_PROCESSOR_TIMEOUT_SECONDS": "1",
    "TENDER_WORKER_LEASE_SECONDS": "4",
    "TENDER_WORKER_RETRY_BASE_SECONDS": "0.2",
    "TENDER_WORKER_RETRY_CAP_SECONDS": "2",
    "TENDER_WORKER_MAX_ATTEMPTS": "60",
    "TENDER_WORKER_POLL_SECONDS": "0.5",
    "TENDER_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on loopback
    # One merchant sends each decline card hundreds of times here: the card-testing limit (10 declines per card
    # and hour, tests/security/test_velocity_limits.py) would refuse most of them.
    "TENDER_VELOCITY_CARD_DECLINES": "0",
    # The simulator here fails about a third of calls by design (SIMULATOR_FAULTS), its timeouts in bursts (56 to
    # 134 failures in a row were seen): the breaker would open again and again and hold the payments past the
    # drain, which is not what these tests are about (tests/faults/test_processor_outage.py is). Off here.
    "TENDER_CIRCUIT_FAILURES": "1000000",
    "TENDER_CIRCUIT_MIN_CALLS": "1000000",
    "TENDER_WEBHOOK_TIMEOUT_SECONDS": "1",
    "TENDER_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "TENDER_WEBHOOK_RETRY_CAP_SECONDS": "2",
    "LOG_LEVEL": "INFO",  # the worker says when a batch's results were superseded (see log_figures)
}


@dataclass(frozen=True, slots=True)
class Card:
    number: str
    weight: int
    status: str  # the simulator's decision
    failure_code: str | None = None
    decline_code: str | None = None


# The API.md test cards, mostly approvals; never the 3-D Secure card (it would wait for a shopper).
CARDS = (
    Card("4242424242424242", 46, "approved"),
    Card("5555555555554444", 34, "approved"),
    Card("4000000000000002", 7, "declined", "card_declined", "generic_decline"),
    Card("4000000000009995", 7, "declined", "card_declined", "insufficient_funds"),
    Card("4000000000000127", 6, "declined", "incorrect_cvc"),
)


@dataclass(slots=True)
class PaymentSpec:
    reference: str
    idempotency_key: str
    card: Card
    body: dict[str, Any]
    abandon_after: float | None  # the client gives up on its first request after this long, then resends
    resend: bool  # the client sends the same request again after its 202: must be a replay

    @property
    def data(self) -> bytes:
        return orjson.dumps(self.body)


def payment_specs(rng: random.Random, count: int, tag: str) -> list[PaymentSpec]:
    weights = [c.weight for c in CARDS]
    specs = []
    for i in range(count):
        card = rng.choices(CARDS, weights)[0]
        body: dict[str, Any] = {
            "amount": rng.randint(100, 250_000),
            "currency": rng.choice(["BRL", "USD", "EUR"]),
            "reference": f"{tag}-{i:05d}",
            "payment_method": {
                "type": "card",
                "card": {
                    "number": card.number,
                    "exp_month": rng.randint(1, 12),
                    "exp_year": 2031,
                    "cvc": "123",
                    "holder_name": "Fault Test",
                },
            },
        }
        if rng.random() < 0.12:
            body["capture"] = False
        roll = rng.random()
        specs.append(
            PaymentSpec(
                reference=body["reference"],
                idempotency_key=f"{tag}-key-{i:05d}",
                card=card,
                body=body,
                abandon_after=rng.uniform(0.001, 0.03) if roll < 0.03 else None,
                resend=0.03 <= roll < 0.05,
            )
        )
    return specs


def expected_status(spec: PaymentSpec) -> str:
    if spec.card.status == "declined":
        return "failed"
    return "succeeded" if spec.body.get("capture", True) else "requires_capture"


@contextlib.contextmanager
def running_stack(
    tender_env: dict[str, str], logs: Path, *, simulator: list[str], env: dict[str, str], workers: int
) -> Iterator[Stack]:
    """Simulator, API and `workers` workers on free loopback ports against the session's test database."""
    api_port, sim_port = free_port(), free_port()
    stack = Stack(
        f"http://127.0.0.1:{api_port}",
        f"http://127.0.0.1:{sim_port}",
        environment(tender_env, TENDER_PORT=str(api_port), TENDER_SIMULATOR_URL=f"http://127.0.0.1:{sim_port}", **env),
        logs,
    )
    # The session's tests share one database: no circuit state or pause of an earlier test's simulator carries over.
    forget_health(tender_env["TENDER_DATABASE_URL"], ["simulator"])
    try:
        sim = stack.start(
            "simulator", "simulator", "--port", str(sim_port), "--db-path", str(logs / "sim.sqlite3"),
            "--log-level", "warning", "--notify-url", f"{stack.api_url}/webhooks/simulator", *simulator,
        )  # fmt: skip
        wait_until_healthy(f"{stack.simulator_url}/healthz", [sim])
        api = stack.start("api", "api")
        started = [stack.start(f"worker-{i + 1}", "worker") for i in range(workers)]
        wait_until_healthy(f"{stack.api_url}/readyz", [api, *started])
        yield stack
    finally:
        stack.stop()


async def worker_started(worker: Process, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while "worker started" not in worker.log.read_text(errors="replace"):
        assert worker.popen.poll() is None, f"{worker.name} exited before it started; log: {worker.log}"
        assert time.monotonic() < deadline, f"{worker.name} did not start in {seconds} s; log: {worker.log}"
        await asyncio.sleep(0.1)


def live_workers(stack: Stack) -> list[Process]:
    return [p for p in stack.processes if p.name.startswith("worker") and p.popen.poll() is None]


@dataclass
class Chaos:
    """Every 1.5-4 s (seeded), SIGKILL one worker and start a replacement at once."""

    stack: Stack
    rng: random.Random
    database_url: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    kills: list[dict[str, Any]] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)  # workers that died without being killed: a bug
    accepted_at: float | None = None  # monotonic time of the last accept, set by the test
    started: int = 0

    @property
    def kills_while_draining(self) -> int:
        return sum(1 for k in self.kills if self.accepted_at is not None and k["at"] >= self.accepted_at)

    async def run(self, started_at: float) -> None:
        self.started = len(live_workers(self.stack))
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.rng.uniform(*KILL_INTERVAL_SECONDS))
            if self.stop.is_set():
                return
            await asyncio.to_thread(self._kill_one, started_at)
            if self.accepted_at is not None and self.kills_while_draining >= KILLS_WHILE_DRAINING:
                return

    def _replace(self) -> None:
        self.started += 1
        self.stack.start(f"worker-{self.started}", "worker")

    def check_crashes(self) -> None:
        """A worker that died without being killed is a bug: note it, and replace it to keep two running."""
        killed = {k["worker"] for k in self.kills}
        for p in self.stack.processes:
            gone = p.popen.poll() is not None
            if p.name.startswith("worker") and gone and p.name not in killed and p.name not in self.crashed:
                self.crashed.append(p.name)
                self._replace()

    def _kill_one(self, started_at: float) -> None:
        self.check_crashes()
        workers = sorted(live_workers(self.stack), key=lambda p: p.name)
        if not workers:
            self._replace()
            return
        victim = self.rng.choice(workers)
        leased = self._leased_payments()
        os.kill(victim.popen.pid, signal.SIGKILL)
        victim.popen.wait(timeout=10)
        now = time.monotonic()
        self.kills.append({"worker": victim.name, "at": now, "t": round(now - started_at, 2), "leased": leased})
        self._replace()

    def _leased_payments(self) -> int | None:
        """Payments under a lease just before the kill (all workers', a killed one's until its lease runs out):
        evidence that kills land mid-batch. A figure only; None should the schema change."""
        import psycopg

        try:
            with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM payments WHERE status = 'processing' AND lease_token IS NOT NULL"
                    " AND next_run_at > now()"
                ).fetchone()
            return int(row[0]) if row else None
        except psycopg.Error:
            return None


def client_session(base_url: str, key: str | None = None, connections: int = CONCURRENCY) -> aiohttp.ClientSession:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return aiohttp.ClientSession(
        base_url,
        headers=headers,
        # Below uvicorn's 5 s keep-alive: an idle pooled connection is dropped here before the server closes it.
        connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=3),
        timeout=aiohttp.ClientTimeout(total=30),
    )


async def get_json(session: aiohttp.ClientSession, path: str, **params: str) -> Any:
    """GET is safe to repeat: a pooled connection the server closed just as it was reused is tried again."""
    for attempt in range(3):
        try:
            async with session.get(path, params=params) as r:
                body = await r.read()
                assert r.status == 200, (path, r.status, body[:500])
                return orjson.loads(body)
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            if attempt == 2:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


async def create_merchant(api_url: str, admin_key: str, name: str) -> dict[str, Any]:
    async with client_session(api_url, admin_key) as admin, admin.post("/admin/v1/merchants", json={"name": name}) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


async def list_payments(session: aiohttp.ClientSession, **filters: str) -> list[dict[str, Any]]:
    """Every page of GET /v1/payments (the merchant's own payments only)."""
    found: list[dict[str, Any]] = []
    params = {"limit": "100", **filters}
    while True:
        page = await get_json(session, "/v1/payments", **params)
        found.extend(page["data"])
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


def work_state(database_url: str | None) -> dict[str, int] | None:
    """Why the processing payments wait: under a live lease, due now, or backing off; and the most tries."""
    if database_url is None:
        return None
    import psycopg

    with psycopg.connect(database_url, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE lease_token IS NOT NULL AND next_run_at > now()),"
            " count(*) FILTER (WHERE next_run_at <= now()),"
            " count(*) FILTER (WHERE lease_token IS NULL AND next_run_at > now()),"
            " coalesce(max(tries), 0)"
            " FROM payments WHERE status = 'processing'"
        ).fetchone()
    assert row is not None
    return dict(zip(("leased", "due", "backing_off", "max_tries"), map(int, row), strict=True))


async def drain(
    session: aiohttp.ClientSession, within: float, log_paths: list[Path], database_url: str | None = None
) -> list[tuple[float, int, dict[str, int] | None]]:
    """Poll until none of the merchant's payments is processing; fail listing the stuck ones after `within`.
    Returns (seconds, processing, why they wait) samples."""
    deadline = time.monotonic() + within
    started = time.monotonic()
    curve: list[tuple[float, int, dict[str, int] | None]] = []
    while True:
        stuck = await list_payments(session, status="processing")
        state = await asyncio.to_thread(work_state, database_url) if stuck else None
        curve.append((round(time.monotonic() - started, 2), len(stuck), state))
        if not stuck:
            return curve
        if time.monotonic() > deadline:
            ids = [p["id"] for p in stuck]
            mentions = [
                line
                for path in log_paths
                if path.exists()
                for line in path.read_text(errors="replace").splitlines()
                if any(i in line for i in ids[:20])
            ]
            pytest.fail(
                f"{len(ids)} payment(s) still processing after {within:.0f} s of draining: {ids[:20]}\n"
                + "\n".join(mentions[-40:])
            )
        await asyncio.sleep(0.5)


async def simulator_view(sim_url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    async with client_session(sim_url, connections=2) as sim:
        records = await get_json(sim, "/_sim/authorizations")
        stats = await get_json(sim, "/_sim/stats")
    return list(records["data"]), dict(stats)


def check_against_simulator(
    payments: dict[str, dict[str, Any]], records: list[dict[str, Any]], specs: dict[str, PaymentSpec]
) -> list[str]:
    """Every disagreement between Tender's payments and the simulator's record of what it charged."""
    problems: list[str] = []
    by_payment: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_payment.setdefault(r["payment"], []).append(r)
    for pid, p in payments.items():
        spec = specs[p["reference"]]
        mine = by_payment.get(pid, [])
        if len(mine) > 1:
            problems.append(f"{pid}: {len(mine)} authorizations at the simulator: {[r['reference'] for r in mine]}")
            continue
        if p["status"] not in FINAL:
            problems.append(f"{pid}: not final: {p['status']}")
            continue
        if p["status"] != expected_status(spec):
            problems.append(f"{pid}: {p['status']}, expected {expected_status(spec)} for card {spec.card.number}")
        if not mine:
            problems.append(f"{pid}: {p['status']} ({p['failure_code']}) WITHOUT any simulator record")
            continue
        r = mine[0]
        if (r["amount"], r["currency"]) != (p["amount"], p["currency"]):
            problems.append(f"{pid}: amount {p['amount']} {p['currency']}, simulator {r['amount']} {r['currency']}")
        agrees = {
            "succeeded": r["status"] == "approved" and r["captured"] and r["amount_captured"] == p["amount"],
            "requires_capture": r["status"] == "approved" and not r["captured"],
            "failed": r["status"] == "declined",
        }[p["status"]]
        if not agrees:
            problems.append(f"{pid}: {p['status']} but the simulator says {r['status']}, captured={r['captured']}")
        if p["status"] == "succeeded" and p["amount_captured"] != p["amount"]:
            problems.append(f"{pid}: succeeded with amount_captured {p['amount_captured']} of {p['amount']}")
        if p["status"] == "failed" and (p["failure_code"], p["decline_code"]) != (
            spec.card.failure_code,
            spec.card.decline_code,
        ):
            problems.append(f"{pid}: failed with {p['failure_code']}/{p['decline_code']}, card {spec.card.number}")
    return problems


def log_lines(stack: Stack, *needles: str) -> list[str]:
    return [
        f"{p.name}: {line}"
        for p in stack.processes
        if p.log.exists()
        for line in p.log.read_text(errors="replace").splitlines()
        if any(n in line for n in needles)
    ]


def log_figures(stack: Stack) -> dict[str, Any]:
    """What the processes' logs say: error lines by process kind, distinct messages, dropped batch results."""
    errors = log_lines(stack, "ERROR", "Traceback (most recent call last)")
    kinds = Counter(line.split(":", 1)[0].split("-", 1)[0] for line in errors if "Traceback" not in line)
    messages = Counter(
        f"{line.split(':', 1)[0].split('-', 1)[0]}: {re.sub(r'^[-0-9 :,]+', '', line.split(': ', 1)[1])[:120]}"
        for line in errors
        if "Traceback" not in line
    )
    dropped = [re.search(r"(\d+) payment\(s\) changed hands", line) for line in log_lines(stack, "changed hands")]
    return {
        "error_lines": dict(kinds),
        "tracebacks": sum("Traceback" in line for line in errors),
        "error_messages": dict(messages.most_common(5)),
        # Worker results not written because the simulator's notification of the same authorization (it
        # notifies on every create here) was applied first, or, rarely, another worker took the row over.
        "worker_results_superseded": sum(int(m.group(1)) for m in dropped if m),
    }


def report(name: str, figures: dict[str, Any], record_property: Any) -> None:
    record_property(FIGURES_PROPERTY, figures)
    print(f"\n== {name}\n{json.dumps(figures, indent=2)}")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "faults.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    saved[name] = figures
    path.write_text(json.dumps(saved, indent=2) + "\n")
