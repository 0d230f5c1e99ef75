"""Several processors as real processes for the routing and failover tests (tests/e2e/test_routing_failover.py,
tests/faults/test_processor_outage.py): named simulator instances on fixed ports that can be SIGKILLed and
started again on the same port and record file, localstripe likewise, the API and workers wired to all of them
(TENDER_SIMULATOR_INSTANCES, TENDER_STRIPE_*), the operator's routing and processor endpoints, and a sampler of
the breakers' states for the figures.

Each simulator notifies `/webhooks/{its name}`; all share Tender's notify secret (the data dir's, as
`tender simulator` resolves it). The simulators' own records are the judge of what was charged where.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import Process, Stack, environment, wait_until_healthy
from tests.support.serve import free_port

STRIPE_KEY = "sk_test_tender"  # localstripe takes any sk_test_ key
FINAL = {"succeeded", "failed", "requires_action", "requires_capture", "canceled"}


@dataclass
class SimulatorProcess:
    """One `tender simulator` named `name` (Tender's processor of that name), restartable on its port and file."""

    stack: Stack
    name: str
    port: int
    args: Sequence[str] = ()
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.popen.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        record = self.stack.logs / f"{self.name}.sqlite3"
        self.process = self.stack.start(
            self.name, "simulator", "--port", str(self.port), "--db-path", str(record), "--log-level", "warning",
            "--notify-url", f"{self.stack.api_url}/webhooks/{self.name}", *self.args,
        )  # fmt: skip
        wait_until_healthy(f"{self.url}/healthz", [self.process])

    def kill(self) -> None:
        """SIGKILL: no goodbye, calls in flight are cut; its record (SQLite, WAL) keeps what it committed."""
        assert self.process is not None and self.running, f"{self.name} is not running"
        self.process.popen.send_signal(signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    async def configure(self, **knobs: Any) -> dict[str, Any]:
        """POST /_sim/config: the run-time fault knobs (error_rate, timeout_rate, drop_rate, ...)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as sim:
            r = await sim.post("/_sim/config", json=knobs)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def records(self) -> list[dict[str, Any]]:
        """Every authorization this simulator holds (reference = Tender's attempt id, payment = payment id)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as sim:
            r = await sim.get("/_sim/authorizations")
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as sim:
            r = await sim.get("/_sim/stats")
        assert r.status_code == 200, r.text
        return dict(r.json())


@dataclass
class LocalStripeProcess:
    """localstripe (a Stripe emulator) on a fixed port; stopping it loses its state (it runs --from-scratch)."""

    stack: Stack
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.popen.poll() is None

    def start(self, startup_seconds: float = 30.0) -> None:
        log = self.stack.logs / "localstripe.log"
        popen = subprocess.Popen(
            [sys.executable, "-m", "localstripe", "--from-scratch", "--port", str(self.port)],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.process = Process("localstripe", popen, log)
        self.stack.processes.append(self.process)  # Stack.stop ends it with the rest
        deadline = time.monotonic() + startup_seconds
        while True:
            assert popen.poll() is None, f"localstripe exited with {popen.returncode}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/v1/customers", auth=(STRIPE_KEY, ""), timeout=1).status_code == 200:
                    return
            assert time.monotonic() < deadline, "localstripe did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None and self.running, "localstripe is not running"
        self.process.popen.send_signal(signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    async def intent(self, intent_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, auth=(STRIPE_KEY, ""), timeout=5) as client:
            r = await client.get(f"/v1/payment_intents/{intent_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())


@dataclass
class Processors:
    """A Tender stack with several processors: `simulators` by name, `stripe` when asked for."""

    stack: Stack
    admin_key: str
    simulators: dict[str, SimulatorProcess]
    stripe: LocalStripeProcess | None

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=10
        )

    def start_worker(self, name: str) -> Process:
        return self.stack.start(name, "worker")

    async def all_records(self) -> dict[str, list[dict[str, Any]]]:
        """Every simulator's authorizations, by processor name (a stopped one's read from nowhere: empty)."""
        return {name: await sim.records() for name, sim in self.simulators.items() if sim.running}


def forget_health(database_url: str, names: Sequence[str]) -> None:
    """No circuit state or pause left by earlier tests of the session (they share its database): these
    processors start closed and unpaused, as on a fresh deployment. Run before the processes start (each caches
    what it read for a second)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM processor_health WHERE processor = ANY(%s)", (list(names),))


@contextlib.contextmanager
def running_processors(
    tender_env: Mapping[str, str],
    logs: Path,
    *,
    simulators: Mapping[str, Sequence[str]],
    stripe: bool = False,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
) -> Iterator[Processors]:
    """Simulators (the first is `simulator`, the rest are TENDER_SIMULATOR_INSTANCES), optionally localstripe,
    the API and `workers` workers, on free loopback ports against the session's test database."""
    names = list(simulators)
    assert names[0] == "simulator", "the first simulator is Tender's `simulator` (TENDER_SIMULATOR_URL)"
    api_port = free_port()
    ports = {name: free_port() for name in names}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    extra: dict[str, str] = {
        "TENDER_PORT": str(api_port),
        "TENDER_SIMULATOR_URL": url["simulator"],
        "TENDER_SIMULATOR_INSTANCES": ",".join(f"{n}={url[n]}" for n in names[1:]),
        **(env or {}),
    }
    stack = Stack(f"http://127.0.0.1:{api_port}", url["simulator"], {}, logs)
    local_stripe = LocalStripeProcess(stack) if stripe else None
    if local_stripe is not None:
        extra |= {"TENDER_STRIPE_SECRET_KEY": STRIPE_KEY, "TENDER_STRIPE_API_BASE": local_stripe.url}
    stack.env = environment(dict(tender_env), **extra)
    sims = {name: SimulatorProcess(stack, name, ports[name], tuple(args)) for name, args in simulators.items()}
    forget_health(tender_env["TENDER_DATABASE_URL"], [*names, "stripe"])
    try:
        for sim in sims.values():
            sim.start()
        if local_stripe is not None:
            local_stripe.start()
        api = stack.start("api", "api")
        started = [stack.start(f"worker-{i + 1}", "worker") for i in range(workers)]
        wait_until_healthy(f"{stack.api_url}/readyz", [api, *started])
        yield Processors(stack, tender_env["TENDER_ADMIN_KEY"], sims, local_stripe)
    finally:
        stack.stop()


# -- the operator's side ---------------------------------------------------------------------------------


async def create_merchant(processors: Processors, name: str) -> dict[str, Any]:
    async with processors.admin() as admin:
        r = await admin.post("/admin/v1/merchants", json={"name": name})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def set_routing(processors: Processors, merchant_id: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    async with processors.admin() as admin:
        r = await admin.put(f"/admin/v1/merchants/{merchant_id}/routing", json={"rules": rules})
        assert r.status_code == 200, r.text
        back = await admin.get(f"/admin/v1/merchants/{merchant_id}/routing")
    assert back.status_code == 200, back.text
    return dict(back.json())


async def processor_states(admin: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """GET /admin/v1/processors by name."""
    r = await admin.get("/admin/v1/processors")
    assert r.status_code == 200, r.text
    return {p["name"]: dict(p) for p in r.json()["data"]}


async def processor_action(
    processors: Processors, name: str, action: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST /admin/v1/processors/{name}/{action} (pause {"reason"?}, resume)."""
    async with processors.admin() as admin:
        r = await admin.post(f"/admin/v1/processors/{name}/{action}", json=body or {})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wait_for_state(processors: Processors, name: str, states: set[str], within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    async with processors.admin() as admin:
        while True:
            seen = (await processor_states(admin))[name]
            if seen["status"] in states:
                return seen
            assert time.monotonic() < deadline, f"{name} still {seen} after {within} s"
            await asyncio.sleep(0.1)


@dataclass
class BreakerSampler:
    """GET /admin/v1/processors every `interval` seconds while it runs: the breakers' timeline."""

    processors: Processors
    interval: float = 0.25
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    errors: int = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BreakerSampler]:
        stop = asyncio.Event()

        async def sample() -> None:
            async with self.processors.admin() as admin:
                while not stop.is_set():
                    try:
                        states = await processor_states(admin)
                        at = round(time.monotonic() - self.started, 2)
                        self.samples.append((at, {n: str(p["status"]) for n, p in states.items()}))
                    except (httpx.HTTPError, AssertionError):
                        self.errors += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.interval)

        task = asyncio.create_task(sample())
        try:
            yield self
        finally:
            stop.set()
            await task

    def transitions(self) -> list[dict[str, Any]]:
        """Each processor's state changes as sampled: [{"t", "processor", "status"}], the first sample included."""
        last: dict[str, str] = {}
        changes: list[dict[str, Any]] = []
        for at, states in self.samples:
            for name, status in sorted(states.items()):
                if last.get(name) != status:
                    changes.append({"t": at, "processor": name, "status": status})
                    last[name] = status
        return changes

    def seen(self, name: str) -> set[str]:
        return {states[name] for _, states in self.samples if name in states}


# -- the merchant's side ---------------------------------------------------------------------------------


def card(number: str = "4242424242424242") -> dict[str, Any]:
    return {
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123", "holder_name": "Routing Test"},
    }


def merchant_client(processors: Processors, merchant: Mapping[str, Any], timeout: float = 15) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=processors.api_url, headers={"Authorization": f"Bearer {merchant['secret_key']}"}, timeout=timeout
    )


async def pay(client: httpx.AsyncClient, amount: int = 1000, currency: str = "USD", **extra: Any) -> dict[str, Any]:
    body = {"amount": amount, "currency": currency, "payment_method": card(), **extra}
    r = await client.post("/v1/payments", json=body)
    assert r.status_code == 202, r.text
    return dict(r.json())


async def wait_final(client: httpx.AsyncClient, payment_id: str, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        p = (await client.get(f"/v1/payments/{payment_id}")).json()
        if p["status"] in FINAL:
            return dict(p)
        assert time.monotonic() < deadline, f"{payment_id} still {p['status']} after {within} s"
        await asyncio.sleep(0.1)


async def pay_and_wait(client: httpx.AsyncClient, **kwargs: Any) -> dict[str, Any]:
    return await wait_final(client, (await pay(client, **kwargs))["id"])


def charges_by_payment(records: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """(processor, authorization) pairs per payment id, across every simulator."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, rows in records.items():
        for row in rows:
            found.setdefault(row["payment"], []).append((name, row))
    return found
