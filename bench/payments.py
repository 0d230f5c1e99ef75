"""Load generator for a running Tender: sends N card payments with C concurrent clients.

It measures how fast Tender accepts payments (`POST /v1/payments` -> 202) and how fast they complete
(status leaves `processing`), and prints a table of figures. See bench/README.md.

    .venv/bin/python bench/payments.py --key sk_test_... -n 2000 -c 50
    .venv/bin/python bench/payments.py --admin-key "$TENDER_ADMIN_KEY" --mix --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

DEFAULT_CARD = "4242424242424242"
# The API.md test cards, minus the 3-D Secure one (4000002760003184) that would wait for a shopper.
MIX_CARDS = (
    "4242424242424242",
    "5555555555554444",
    "4000056655665556",
    "4000000000000002",
    "4000000000009995",
    "4000000000009987",
    "4000000000000069",
    "4000000000000127",
)
COMPLETE_STATUSES = frozenset({"succeeded", "failed", "requires_capture", "canceled", "requires_action"})
POLL_PAUSE_S = 0.3
MAX_ERROR_SAMPLES = 5
ERROR_SAMPLE_CHARS = 300
CARD_LIKE = re.compile(r"\d{12,19}")

console = Console()


class BenchError(Exception):
    """A setup problem (unreachable server, bad credentials): reported and exit code 2."""


@dataclass(frozen=True)
class Config:
    url: str
    payments: int
    concurrency: int
    poll_concurrency: int
    cards: tuple[str, ...]
    currency: str
    wait_timeout: float
    warmup: int
    json_path: Path | None


@dataclass
class Payment:
    """One accepted payment as the benchmark sees it."""

    id: str
    status: str = "processing"
    completed_at: float | None = None  # the server's `updated` when first seen complete, unix seconds


@dataclass
class Phase:
    """Raw observations of one run: sending, then waiting for completion."""

    total: int
    first_start: float | None = None  # wall clock (unix s) when the first POST started
    send_started: float = 0.0  # perf_counter at the start of sending
    send_ended: float = 0.0  # perf_counter when the last POST answered
    send_ended_wall: float = 0.0  # the same moment on the wall clock
    latencies_s: list[float] = field(default_factory=list)  # of the 202 answers
    rejected: Counter[str] = field(default_factory=Counter)  # status code (or exception name) -> count
    error_samples: list[str] = field(default_factory=list)
    payments: dict[str, Payment] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    poll_errors: int = 0


@dataclass
class Results:
    url: str
    run_id: str
    currency: str
    cards_last4: list[str]
    payments: int
    concurrency: int
    warmup: int
    accepted: int
    rejected: dict[str, int]
    send_wall_s: float
    accepted_per_s: float | None
    completed: int
    incomplete: int
    completed_per_s: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    statuses: dict[str, int]
    drain_s: float | None
    poll_errors: int
    error_samples: list[str]

    @property
    def ok(self) -> bool:
        return self.accepted == self.payments and self.incomplete == 0


# --------------------------------------------------------------------------- helpers


def redact(text: str) -> str:
    """Shortens an error body and masks anything that looks like a card number."""
    return CARD_LIKE.sub(lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], text)[:ERROR_SAMPLE_CHARS]


def parse_timestamp(value: object) -> float | None:
    """ISO 8601 (UTC, `Z` or offset) -> unix seconds; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


Percentiles = tuple[float | None, float | None, float | None, float | None]


def percentiles_ms(latencies_s: Sequence[float]) -> Percentiles:
    """p50, p95, p99 and max, in milliseconds."""
    if not latencies_s:
        return None, None, None, None
    values = [v * 1000 for v in latencies_s]
    if len(values) == 1:
        return values[0], values[0], values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98], max(values)


def card_body(number: str) -> dict[str, Any]:
    is_amex = number.startswith(("34", "37"))
    return {
        "type": "card",
        "card": {
            "number": number,
            "exp_month": 12,
            "exp_year": datetime.now(UTC).year + 3,
            "cvc": "1234" if is_amex else "123",
            "holder_name": "Bench Shopper",
        },
    }


def payment_body(cfg: Config, reference: str, index: int) -> dict[str, Any]:
    return {
        "amount": random.randint(100, 100_000),
        "currency": cfg.currency,
        "payment_method": card_body(cfg.cards[index % len(cfg.cards)]),
        "reference": reference,
        "description": "tender bench",
    }


# --------------------------------------------------------------------------- live display


class RateColumn(ProgressColumn):
    """Average rate since the bar started."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        if not elapsed or not task.completed:
            return Text("    -/s", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:7,.0f}/s", style="progress.data.speed")


class Display:
    """Two live bars, accepted and completed, fed by the senders and the poller."""

    def __init__(self, progress: Progress, label: str, total: int) -> None:
        self._progress = progress
        self._label = label
        self._rejected = 0
        self._accepted: TaskID = progress.add_task(f"{label}accepted", total=total)
        self._completed: TaskID = progress.add_task(f"{label}completed", total=total)

    def accepted(self) -> None:
        self._progress.advance(self._accepted)

    def rejected(self) -> None:
        self._rejected += 1
        description = f"{self._label}accepted ({self._rejected} rejected)"
        self._progress.update(self._accepted, description=description)
        # A rejected payment will never complete: shrink the completion bar's total.
        total = self._progress.tasks[self._completed].total or 0
        self._progress.update(self._completed, total=max(total - 1, 0))

    def completed(self) -> None:
        self._progress.advance(self._completed)

    def sending_done(self) -> None:
        """Freezes the accepted bar's clock so its rate stays the sending rate."""
        self._progress.stop_task(self._accepted)

    def polling_done(self) -> None:
        self._progress.stop_task(self._completed)


def make_progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
    )


# --------------------------------------------------------------------------- sending


def record_rejection(phase: Phase, display: Display, kind: str, detail: str) -> None:
    phase.rejected[kind] += 1
    sample = f"{kind}: {redact(detail)}"
    if len(phase.error_samples) < MAX_ERROR_SAMPLES and sample not in phase.error_samples:
        phase.error_samples.append(sample)
    display.rejected()


def record_completion(phase: Phase, display: Display, payment: Payment, data: dict[str, Any]) -> None:
    """Marks a payment complete if `data` (a payment object) has left `processing`."""
    status = data.get("status")
    if not isinstance(status, str) or status not in COMPLETE_STATUSES or payment.completed_at is not None:
        return
    payment.status = status
    payment.completed_at = parse_timestamp(data.get("updated")) or time.time()
    phase.pending.discard(payment.id)
    display.completed()


def payment_id_of(response: httpx.Response, data: object) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])
    location = response.headers.get("location", "")
    return location.rsplit("/", 1)[-1] or None


async def send_one(
    client: httpx.AsyncClient, cfg: Config, phase: Phase, display: Display, reference: str, index: int
) -> None:
    body = payment_body(cfg, reference, index)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    started_wall = time.time()
    if phase.first_start is None or started_wall < phase.first_start:
        phase.first_start = started_wall
    started = time.perf_counter()
    try:
        response = await client.post("/v1/payments", json=body, headers=headers)
    except httpx.HTTPError as exc:
        record_rejection(phase, display, type(exc).__name__, str(exc))
        return
    latency = time.perf_counter() - started
    if response.status_code != 202:
        record_rejection(phase, display, str(response.status_code), response.text)
        return
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    payment_id = payment_id_of(response, data)
    if payment_id is None:
        record_rejection(phase, display, "202 without id", response.text)
        return
    phase.latencies_s.append(latency)
    payment = Payment(payment_id)
    phase.payments[payment_id] = payment
    phase.pending.add(payment_id)
    display.accepted()
    if isinstance(data, dict):
        record_completion(phase, display, payment, data)


async def send_all(
    client: httpx.AsyncClient,
    cfg: Config,
    phase: Phase,
    display: Display,
    prefix: str,
) -> None:
    """Sends `phase.total` payments from `cfg.concurrency` workers sharing one queue of indexes."""
    indexes = iter(range(phase.total))

    async def worker() -> None:
        for index in indexes:
            await send_one(client, cfg, phase, display, f"{prefix}-{index}", index)

    phase.send_started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(cfg.concurrency, phase.total))))
    phase.send_ended = time.perf_counter()
    phase.send_ended_wall = time.time()


# --------------------------------------------------------------------------- polling


async def poll_one(
    client: httpx.AsyncClient,
    phase: Phase,
    display: Display,
    payment: Payment,
    limit: asyncio.Semaphore,
    expired: Callable[[], bool],
) -> None:
    async with limit:
        if expired() or payment.completed_at is not None:
            return
        try:
            response = await client.get(f"/v1/payments/{payment.id}")
            data: Any = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            data = None
        if not isinstance(data, dict):
            phase.poll_errors += 1
            return
        record_completion(phase, display, payment, data)


async def poll_until_complete(
    client: httpx.AsyncClient, cfg: Config, phase: Phase, display: Display, sending_done: asyncio.Event
) -> None:
    """Re-reads incomplete payments in sweeps while sending and after, until all complete or timeout."""
    limit = asyncio.Semaphore(cfg.poll_concurrency)

    def expired() -> bool:
        return sending_done.is_set() and time.perf_counter() >= phase.send_ended + cfg.wait_timeout

    while True:
        if sending_done.is_set() and (not phase.pending or expired()):
            return
        sweep = [phase.payments[payment_id] for payment_id in list(phase.pending)]
        await asyncio.gather(*(poll_one(client, phase, display, p, limit, expired) for p in sweep))
        if phase.pending or not sending_done.is_set():
            await asyncio.sleep(POLL_PAUSE_S)


async def run_phase(client: httpx.AsyncClient, cfg: Config, total: int, prefix: str, label: str) -> Phase:
    phase = Phase(total=total)
    with make_progress() as progress:
        display = Display(progress, label, total)
        sending_done = asyncio.Event()
        poller = asyncio.create_task(poll_until_complete(client, cfg, phase, display, sending_done))
        try:
            await send_all(client, cfg, phase, display, prefix)
        finally:
            sending_done.set()
            display.sending_done()
        await poller
        display.polling_done()
    return phase


# --------------------------------------------------------------------------- setup


async def check_reachable(client: httpx.AsyncClient) -> None:
    try:
        response = await client.get("/healthz")
    except httpx.HTTPError as exc:
        raise BenchError(f"cannot reach Tender at {client.base_url}: {exc!r}") from exc
    if response.status_code != 200:
        console.print(f"[yellow]warning:[/] GET /healthz answered {response.status_code}")


async def check_key(client: httpx.AsyncClient) -> None:
    """Fails fast on a wrong merchant key instead of sending N payments that all come back 401."""
    try:
        response = await client.get("/v1/payments", params={"limit": 1})
    except httpx.HTTPError as exc:
        raise BenchError(f"GET /v1/payments failed: {exc!r}") from exc
    if response.status_code in (401, 403):
        raise BenchError(f"the merchant key was refused ({response.status_code}): {redact(response.text)}")


async def create_merchant(client: httpx.AsyncClient, admin_key: str) -> tuple[str, str]:
    """Creates a fresh merchant; returns (merchant id, secret key)."""
    name = f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    response = await client.post(
        "/admin/v1/merchants",
        json={"name": name},
        headers={"Authorization": f"Bearer {admin_key}", "Idempotency-Key": str(uuid.uuid4())},
    )
    if response.status_code != 201:
        raise BenchError(f"POST /admin/v1/merchants answered {response.status_code}: {redact(response.text)}")
    try:
        data: Any = response.json()
        return str(data["id"]), str(data["secret_key"])
    except (ValueError, TypeError, KeyError) as exc:
        raise BenchError("POST /admin/v1/merchants: no id/secret_key in the answer") from exc


# --------------------------------------------------------------------------- results


def summarize(cfg: Config, phase: Phase, run_id: str) -> Results:
    accepted = len(phase.payments)
    completion_times = [p.completed_at for p in phase.payments.values() if p.completed_at is not None]
    completed = len(completion_times)
    send_wall_s = phase.send_ended - phase.send_started
    last_completion = max(completion_times, default=None)
    completed_per_s = None
    drain_s = None
    if last_completion is not None and phase.first_start is not None:
        span = last_completion - phase.first_start
        completed_per_s = completed / span if span > 0 else None
        drain_s = max(last_completion - phase.send_ended_wall, 0.0)
    p50, p95, p99, p_max = percentiles_ms(phase.latencies_s)
    statuses = Counter(p.status for p in phase.payments.values())
    return Results(
        url=cfg.url,
        run_id=run_id,
        currency=cfg.currency,
        cards_last4=sorted({card[-4:] for card in cfg.cards}),
        payments=cfg.payments,
        concurrency=cfg.concurrency,
        warmup=cfg.warmup,
        accepted=accepted,
        rejected=dict(phase.rejected.most_common()),
        send_wall_s=send_wall_s,
        accepted_per_s=accepted / send_wall_s if send_wall_s > 0 else None,
        completed=completed,
        incomplete=accepted - completed,
        completed_per_s=completed_per_s,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        latency_max_ms=p_max,
        statuses=dict(statuses.most_common()),
        drain_s=drain_s,
        poll_errors=phase.poll_errors,
        error_samples=phase.error_samples,
    )


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def counts(mapping: dict[str, int]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in mapping.items()) or "-"


def results_table(r: Results) -> Table:
    table = Table(title=f"Tender bench {r.run_id}", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("payments", f"{r.payments:,}"),
        ("concurrency", str(r.concurrency)),
        ("accepted (202)", f"{r.accepted:,}"),
        ("rejected", counts(r.rejected)),
        ("sending time", fmt(r.send_wall_s, " s", 2)),
        ("accepted/s", fmt(r.accepted_per_s)),
        ("completed", f"{r.completed:,}" + (f" ({r.incomplete:,} incomplete)" if r.incomplete else "")),
        ("completed/s", fmt(r.completed_per_s)),
        ("accept latency p50", fmt(r.latency_p50_ms, " ms")),
        ("accept latency p95", fmt(r.latency_p95_ms, " ms")),
        ("accept latency p99", fmt(r.latency_p99_ms, " ms")),
        ("accept latency max", fmt(r.latency_max_ms, " ms")),
        ("statuses", counts(r.statuses)),
        ("time to drain", fmt(r.drain_s, " s", 2)),
    ]
    if r.poll_errors:
        rows.append(("poll errors", f"{r.poll_errors:,}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def report(r: Results, json_path: Path | None) -> None:
    console.print(results_table(r))
    if r.error_samples:
        console.print("[bold]first errors:[/]")
        for sample in r.error_samples:
            console.print(f"  {sample}", markup=False, highlight=False, soft_wrap=True)
    if json_path is not None:
        json_path.write_text(json.dumps({**asdict(r), "ok": r.ok}, indent=2) + "\n")
        console.print(f"results written to {json_path}")


# --------------------------------------------------------------------------- entry point


async def bench(cfg: Config, key: str | None, admin_key: str | None) -> Results:
    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    # pool=None: pollers may wait for a connection while all of them are busy sending.
    timeout = httpx.Timeout(30.0, connect=10.0, pool=None)
    async with httpx.AsyncClient(base_url=cfg.url, limits=limits, timeout=timeout) as client:
        await check_reachable(client)
        if key is None:
            assert admin_key is not None
            merchant_id, key = await create_merchant(client, admin_key)
            console.print(f"created merchant {merchant_id}")
        client.headers["Authorization"] = f"Bearer {key}"
        await check_key(client)
        run_id = uuid.uuid4().hex[:8]
        cards = f"{len(cfg.cards)} test cards" if len(cfg.cards) > 1 else f"card ...{cfg.cards[0][-4:]}"
        console.print(f"run {run_id}: {cfg.payments:,} payments, {cfg.concurrency} clients, {cards}")
        if cfg.warmup > 0:
            warm = await run_phase(client, cfg, cfg.warmup, f"bench-{run_id}-warmup", "warmup ")
            incomplete = len(warm.pending)
            console.print(f"warmup (not measured): {len(warm.payments)} accepted, {incomplete} incomplete")
        phase = await run_phase(client, cfg, cfg.payments, f"bench-{run_id}", "")
        return summarize(cfg, phase, run_id)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send N card payments with C concurrent clients to Tender.")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="Tender base URL")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--key", help="a merchant secret key sk_test_... (or env TENDER_BENCH_KEY)")
    auth.add_argument("--admin-key", help="operator key: bench a fresh merchant (or env TENDER_ADMIN_KEY)")
    parser.add_argument("-n", "--payments", type=positive_int, default=2000, help="measured payments")
    parser.add_argument("-c", "--concurrency", type=positive_int, default=50, help="concurrent clients")
    parser.add_argument(
        "--poll-concurrency", type=positive_int, default=10, help="concurrent GETs of the completion poller"
    )
    parser.add_argument("--card", default=DEFAULT_CARD, help="card number for every payment")
    parser.add_argument("--mix", action="store_true", help="cycle through the test cards (declines too)")
    parser.add_argument("--currency", default="BRL")
    parser.add_argument("--wait-timeout", type=float, default=120.0, help="seconds to wait for completion")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write the results as JSON")
    parser.add_argument("--warmup", type=int, default=50, help="payments sent first and not measured")
    return parser.parse_args(argv)


def resolve_keys(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(merchant key, admin key): flags first, then TENDER_BENCH_KEY, then TENDER_ADMIN_KEY."""
    if args.key:
        return str(args.key), None
    if args.admin_key:
        return None, str(args.admin_key)
    if env_key := os.environ.get("TENDER_BENCH_KEY"):
        return env_key, None
    if env_admin := os.environ.get("TENDER_ADMIN_KEY"):
        return None, env_admin
    raise BenchError("give --key (or TENDER_BENCH_KEY) or --admin-key (or TENDER_ADMIN_KEY)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(
        url=str(args.url).rstrip("/"),
        payments=args.payments,
        concurrency=args.concurrency,
        poll_concurrency=min(args.poll_concurrency, args.concurrency),
        cards=MIX_CARDS if args.mix else (str(args.card),),
        currency=str(args.currency).upper(),
        wait_timeout=args.wait_timeout,
        warmup=max(args.warmup, 0),
        json_path=args.json_path,
    )
    try:
        key, admin_key = resolve_keys(args)
        results = asyncio.run(bench(cfg, key, admin_key))
    except BenchError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    report(results, cfg.json_path)
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(main())
