"""Load generator for a running Tender: sends N card payments with C concurrent clients.

It measures how fast Tender accepts payments (`POST /v1/payments` -> 202) and how fast they complete
(status leaves `processing`), and prints a table of figures. See bench/README.md.

    .venv/bin/python bench/payments.py --key sk_test_... -n 2000 -c 50
    .venv/bin/python bench/payments.py --admin-key "$TENDER_ADMIN_KEY" --mix --json /tmp/bench.json
    .venv/bin/python bench/payments.py --admin-key "$TENDER_ADMIN_KEY" -n 10000 -c 100 --processes 2
    .venv/bin/python bench/payments.py --admin-key "$TENDER_ADMIN_KEY" -n 3000 --webhooks

The client is kept cheap so that it is not what gets measured: aiohttp with one connection pool,
orjson, uvloop when installed, completion read from list pages rather than one GET per payment, and
optionally several client processes (`--processes`). Its own CPU time is printed with the figures.

With `--webhooks`, a receiver in a process of its own (aiohttp.web on 127.0.0.1) takes Tender's webhook
deliveries for the run, verifies their Standard Webhooks signatures and reports each one; the bench waits
for every completed payment's final-status event and prints how fast and how late they came.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import random
import re
import resource
import socket
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import aiohttp
import orjson
from aiohttp import web
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
from standardwebhooks.webhooks import Webhook

if TYPE_CHECKING:
    import multiprocessing.process
    import multiprocessing.queues
    import multiprocessing.synchronize

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
POLL_PAUSE_S = 0.25  # between completion sweeps
PAGE_LIMIT = 100  # the API's maximum `limit`
FINAL_READ_ATTEMPTS = 3  # failed list pages tolerated while reading the final statuses
CHILD_FLUSH_S = 0.1  # how often a client process reports its accepted ids to the parent
CHILD_PUMP_S = 0.05  # how often the parent reads those reports
CHILD_START_TIMEOUT_S = 60.0
MAX_ERROR_SAMPLES = 5
ERROR_SAMPLE_CHARS = 300
CARD_LIKE = re.compile(r"\d{12,19}")
# Webhooks (--webhooks): the receiver process and how the bench waits for it.
FINAL_EVENT_TYPES = frozenset(f"payment.{status}" for status in COMPLETE_STATUSES)
WEBHOOK_PATH = "/tender-bench/webhooks"
RECEIVER_FLUSH_S = 0.1  # how often the receiver reports its deliveries to the bench process
RECEIVER_START_TIMEOUT_S = 60.0
RECEIVER_STOP_TIMEOUT_S = 10.0
RECEIVER_BACKLOG = 1024  # Tender's pump opens up to 2 x TENDER_WEBHOOK_BATCH_SIZE connections at once

T = TypeVar("T")

console = Console()


class BenchError(Exception):
    """A setup problem (unreachable server, bad credentials): reported and exit code 2."""


@dataclass(frozen=True)
class Config:
    url: str
    payments: int
    concurrency: int
    processes: int
    cards: tuple[str, ...]
    currency: str
    wait_timeout: float
    warmup: int
    json_path: Path | None
    webhooks: bool = False
    webhook_timeout: float = 60.0


@dataclass
class Payment:
    """One accepted payment as the benchmark sees it."""

    id: str
    status: str = "processing"
    completed_at: float | None = None  # the server's `updated` once read complete, unix seconds


@dataclass
class SendStats:
    """What one sender (the bench process, or one client process) observed while sending."""

    first_start: float | None = None  # wall clock (unix s) when the first POST started
    send_started: float = 0.0  # wall clock at the start of sending
    send_ended: float = 0.0  # wall clock when the last POST answered
    latencies_s: list[float] = field(default_factory=list)  # of the 202 answers
    rejected: Counter[str] = field(default_factory=Counter)  # status code (or exception name) -> count
    error_samples: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # CPU time of the sending process(es) while sending

    def merge(self, other: SendStats) -> None:
        """Adds another process's observations (the clocks are compared as wall clock times)."""
        if other.first_start is not None:
            self.first_start = min(self.first_start or other.first_start, other.first_start)
        self.send_started = min(self.send_started or other.send_started, other.send_started)
        self.send_ended = max(self.send_ended, other.send_ended)
        self.latencies_s.extend(other.latencies_s)
        self.rejected.update(other.rejected)
        for sample in other.error_samples:
            add_error_sample(self, sample)
        self.cpu_s += other.cpu_s


@dataclass
class Phase:
    """Raw observations of one run: sending, then waiting for completion."""

    total: int
    sent: SendStats = field(default_factory=SendStats)
    sending_done_at: float | None = None  # perf_counter in this process, for --wait-timeout
    payments: dict[str, Payment] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)  # accepted, not yet seen out of `processing`
    poll_errors: int = 0

    def add(self, payment_id: str) -> None:
        self.payments[payment_id] = Payment(payment_id)
        self.pending.add(payment_id)


@dataclass
class WebhookResults:
    """What the receiver got during the measured phase (`--webhooks`)."""

    endpoint: str
    deliveries: int  # requests with a valid signature
    unique_events: int  # distinct webhook-id among them
    duplicates: int  # deliveries - unique_events: the same event delivered again
    invalid_signatures: int  # requests refused by standardwebhooks (still answered 204)
    event_types: dict[str, int]  # deliveries by event type
    delivery_window_s: float  # first to last receipt
    deliveries_per_s: float | None  # deliveries / delivery_window_s
    final_events: int  # completed payments whose final-status event arrived
    missing_final_events: int  # completed payments whose final-status event did not arrive in time
    lag_p50_ms: float | None  # receipt of the final-status event - the payment's `updated`
    lag_p95_ms: float | None
    lag_p99_ms: float | None
    lag_max_ms: float | None
    wait_s: float  # how long the bench waited for deliveries after the last completion was seen
    receiver_cpu_s: float | None  # CPU time of the receiver process from ready to stopped
    invalid_samples: list[str]

    @property
    def ok(self) -> bool:
        return self.missing_final_events == 0 and self.invalid_signatures == 0


@dataclass
class Results:
    url: str
    run_id: str
    event_loop: str
    currency: str
    cards_last4: list[str]
    payments: int
    concurrency: int
    processes: int
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
    client_cpu_sending_s: float  # all client processes, while sending the measured payments
    client_cpu_s: float = 0.0  # the whole run (self + children), filled in at the end
    run_wall_s: float = 0.0
    webhooks: WebhookResults | None = None  # with --webhooks

    @property
    def ok(self) -> bool:
        hooks_ok = self.webhooks is None or self.webhooks.ok
        return self.accepted == self.payments and self.incomplete == 0 and hooks_ok


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


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


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


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Runs `main` on uvloop when it is installed (it comes with uvicorn[standard]), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


# --------------------------------------------------------------------------- HTTP


def make_session(concurrency: int) -> aiohttp.ClientSession:
    """One pool of `concurrency` keep-alive connections (call it inside the event loop)."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=300)
    # No overall limit: a request may wait for a pooled connection while all of them are busy.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


class Api:
    """Tender's HTTP API through one aiohttp session; bodies are bytes, JSON is orjson's."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: str | None = None) -> None:
        self.session = session
        self.base_url = base_url
        self.auth: dict[str, str] = {}
        if key is not None:
            self.use_key(key)

    def use_key(self, key: str) -> None:
        self.auth = {"Authorization": f"Bearer {key}"}

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self.session.get(self.base_url + path, params=params, headers=self.auth) as response:
            return response.status, await response.read()

    async def delete(self, path: str) -> tuple[int, bytes]:
        async with self.session.delete(self.base_url + path, headers=self.auth) as response:
            return response.status, await response.read()

    async def post(
        self, path: str, body: dict[str, Any], auth: dict[str, str] | None = None
    ) -> tuple[int, bytes, str | None]:
        """(status, body, Location header); every POST has its own Idempotency-Key."""
        headers = {
            **(self.auth if auth is None else auth),
            "Content-Type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        async with self.session.post(self.base_url + path, data=orjson.dumps(body), headers=headers) as response:
            return response.status, await response.read(), response.headers.get("Location")


def text_of(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def load_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


async def list_page(api: Api, params: dict[str, str]) -> tuple[list[dict[str, Any]], bool] | None:
    """One page of `GET /v1/payments` as (payments, has_more); None when the request failed."""
    try:
        status, raw = await api.get("/v1/payments", params)
    except (aiohttp.ClientError, TimeoutError):
        return None
    data = load_json(raw) if status == 200 else None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return None
    items = [item for item in data["data"] if isinstance(item, dict) and isinstance(item.get("id"), str)]
    return items, bool(data.get("has_more"))


# --------------------------------------------------------------------------- live display


class RateColumn(ProgressColumn):
    """Average rate since the bar started."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        if not elapsed or not task.completed:
            return Text("    -/s", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:7,.0f}/s", style="progress.data.speed")


class Display:
    """Live bars, accepted and completed, fed by the senders and the poller; with --webhooks a third one,
    the completed payments whose final-status event the receiver got, fed by the webhook tracker."""

    def __init__(self, progress: Progress, label: str, total: int, *, webhooks: bool = False) -> None:
        self._progress = progress
        self._label = label
        self._rejected = 0
        self._accepted: TaskID = progress.add_task(f"{label}accepted", total=total)
        self._completed: TaskID = progress.add_task(f"{label}completed", total=total)
        self._delivered: TaskID | None = None
        if webhooks:
            self._delivered = progress.add_task(f"{label}final events delivered", total=total)

    def accepted(self, count: int = 1) -> None:
        self._progress.advance(self._accepted, count)

    def rejected(self, count: int = 1) -> None:
        self._rejected += count
        description = f"{self._label}accepted ({self._rejected} rejected)"
        self._progress.update(self._accepted, description=description)
        # A rejected payment will never complete (nor have events): shrink the later bars' totals.
        for task in (self._completed, self._delivered):
            if task is not None:
                total = self._progress.tasks[task].total or 0
                self._progress.update(task, total=max(total - count, 0))

    def completed(self, count: int = 1) -> None:
        self._progress.advance(self._completed, count)

    def sending_done(self) -> None:
        """Freezes the accepted bar's clock so its rate stays the sending rate."""
        self._progress.stop_task(self._accepted)

    def polling_done(self, incomplete: int) -> None:
        self._progress.stop_task(self._completed)
        if self._delivered is not None and incomplete:
            # A payment still processing after --wait-timeout has no final event to wait for.
            total = self._progress.tasks[self._delivered].total or 0
            self._progress.update(self._delivered, total=max(total - incomplete, 0))

    def delivered(self, count: int) -> None:
        """How many payments' final-status events have arrived so far (an absolute count)."""
        if self._delivered is not None:
            self._progress.update(self._delivered, completed=count)

    def delivering_done(self) -> None:
        if self._delivered is not None:
            self._progress.stop_task(self._delivered)


def make_progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=4,
    )


# --------------------------------------------------------------------------- sending


class Sink(Protocol):
    """Where a sender reports each outcome as it happens."""

    def accepted(self, payment_id: str) -> None: ...

    def rejected(self) -> None: ...


class LocalSink:
    """Sending in the bench process itself: straight into the phase and the bars."""

    def __init__(self, phase: Phase, display: Display) -> None:
        self._phase = phase
        self._display = display

    def accepted(self, payment_id: str) -> None:
        self._phase.add(payment_id)
        self._display.accepted()

    def rejected(self) -> None:
        self._display.rejected()


def add_error_sample(stats: SendStats, sample: str) -> None:
    if len(stats.error_samples) < MAX_ERROR_SAMPLES and sample not in stats.error_samples:
        stats.error_samples.append(sample)


def record_rejection(stats: SendStats, sink: Sink, kind: str, detail: str) -> None:
    stats.rejected[kind] += 1
    add_error_sample(stats, f"{kind}: {redact(detail)}")
    sink.rejected()


def payment_id_of(location: str | None, data: object) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])
    return (location or "").rsplit("/", 1)[-1] or None


async def send_one(api: Api, cfg: Config, stats: SendStats, sink: Sink, reference: str, index: int) -> None:
    body = payment_body(cfg, reference, index)
    if stats.first_start is None:
        stats.first_start = time.time()
    started = time.perf_counter()
    try:
        status, raw, location = await api.post("/v1/payments", body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        record_rejection(stats, sink, type(exc).__name__, str(exc))
        return
    latency = time.perf_counter() - started
    if status != 202:
        record_rejection(stats, sink, str(status), text_of(raw))
        return
    payment_id = payment_id_of(location, load_json(raw))
    if payment_id is None:
        record_rejection(stats, sink, "202 without id", text_of(raw))
        return
    stats.latencies_s.append(latency)
    sink.accepted(payment_id)


async def send_all(
    api: Api, cfg: Config, stats: SendStats, sink: Sink, prefix: str, indexes: range, concurrency: int
) -> None:
    """Sends one payment per index from `concurrency` workers sharing one iterator of indexes."""
    pending = iter(indexes)

    async def worker() -> None:
        for index in pending:
            await send_one(api, cfg, stats, sink, f"{prefix}-{index}", index)

    stats.send_started = time.time()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(indexes)))))
    stats.send_ended = time.time()


# --------------------------------------------------------------------------- completion


async def sweep(api: Api, phase: Phase, display: Display) -> None:
    """One pass over `GET /v1/payments?status=processing`: ours not listed there are complete.

    Only ids accepted before the sweep starts are judged (a later one may be on a page already read).
    The list is newest first and ids sort by creation time, so paging stops once past our oldest id.
    """
    ours = set(phase.pending)
    if not ours:
        return
    oldest = min(ours)
    still_processing: set[str] = set()
    params = {"status": "processing", "limit": str(PAGE_LIMIT)}
    while True:
        page = await list_page(api, params)
        if page is None:
            phase.poll_errors += 1
            return  # judge nothing on a partial sweep
        items, has_more = page
        still_processing.update(item["id"] for item in items if item["id"] in ours)
        if not has_more or not items or items[-1]["id"] <= oldest:
            break
        params["starting_after"] = items[-1]["id"]
    done = ours - still_processing
    seen_at = time.time()  # provisional completion time, replaced by `updated` in read_final_statuses
    for payment_id in done:
        phase.pending.discard(payment_id)
        phase.payments[payment_id].completed_at = seen_at
    if done:
        display.completed(len(done))


async def poll_until_complete(
    api: Api, cfg: Config, phase: Phase, display: Display, sending_done: asyncio.Event
) -> None:
    """Sweeps while sending and after, until every accepted payment is complete or --wait-timeout."""

    def expired() -> bool:
        return phase.sending_done_at is not None and time.perf_counter() >= phase.sending_done_at + cfg.wait_timeout

    while True:
        finished = sending_done.is_set()  # read before the sweep: the last ids must be swept after it
        if finished and (not phase.pending or expired()):
            return
        await sweep(api, phase, display)
        if phase.pending or not finished:
            await asyncio.sleep(POLL_PAUSE_S)


async def read_final_statuses(api: Api, phase: Phase) -> None:
    """Pages through `GET /v1/payments` (newest first) for the final status and `updated` of ours."""
    missing = set(phase.payments)
    if not missing:
        return
    oldest = min(missing)
    params = {"limit": str(PAGE_LIMIT)}
    failures = 0
    while missing:
        page = await list_page(api, params)
        if page is None:
            phase.poll_errors += 1
            failures += 1
            if failures >= FINAL_READ_ATTEMPTS:
                return  # keep the sweeps' provisional figures
            await asyncio.sleep(POLL_PAUSE_S)
            continue
        items, has_more = page
        for item in items:
            payment = phase.payments.get(item["id"])
            if payment is None:
                continue
            missing.discard(payment.id)
            status = item.get("status")
            if not isinstance(status, str):
                continue
            payment.status = status
            if status in COMPLETE_STATUSES:
                payment.completed_at = parse_timestamp(item.get("updated")) or payment.completed_at or time.time()
            else:
                payment.completed_at = None
        if not has_more or not items or items[-1]["id"] <= oldest:
            return
        params["starting_after"] = items[-1]["id"]


# --------------------------------------------------------------------------- one phase, in this process


async def measure(
    api: Api,
    cfg: Config,
    phase: Phase,
    label: str,
    send: Callable[[Display], Awaitable[None]],
    webhooks: Webhooks | None = None,
) -> None:
    """Runs `send` under live bars while a poller sweeps for completions, then waits for the poller;
    with `webhooks`, then for the final-status events of the completed payments too."""
    with make_progress() as progress:
        display = Display(progress, label, phase.total, webhooks=webhooks is not None)
        sending_done = asyncio.Event()
        polling_done = asyncio.Event()
        poller = asyncio.create_task(poll_until_complete(api, cfg, phase, display, sending_done))
        tracker = None
        if webhooks is not None:
            tracker = asyncio.create_task(webhooks.track(phase, display, polling_done))
        cpu_before = cpu_seconds()
        try:
            try:
                await send(display)
            finally:
                phase.sent.cpu_s += cpu_seconds() - cpu_before  # with P > 1: this process's share
                phase.sending_done_at = time.perf_counter()
                sending_done.set()
                display.sending_done()
            await poller
            display.polling_done(len(phase.pending))
            polling_done.set()
            if tracker is not None:
                await tracker
                display.delivering_done()
        finally:
            poller.cancel()  # on an error or Ctrl-C: no sweep after the session is closed
            if tracker is not None:
                tracker.cancel()


async def run_phase(
    api: Api, senders: Api, cfg: Config, total: int, prefix: str, label: str, webhooks: Webhooks | None = None
) -> Phase:
    """Sending from this process, through `senders`; `api` polls."""
    phase = Phase(total=total)

    async def send(display: Display) -> None:
        await send_all(senders, cfg, phase.sent, LocalSink(phase, display), prefix, range(total), cfg.concurrency)

    await measure(api, cfg, phase, label, send, webhooks)
    return phase


# --------------------------------------------------------------------------- one phase, in P client processes


@dataclass
class ChildMessage:
    kind: str  # ready | progress | done | error
    child: int
    ids: list[str] = field(default_factory=list)  # progress: accepted since the last report
    rejected: int = 0  # progress: rejected since the last report
    stats: SendStats | None = None  # done
    error: str = ""  # error


@dataclass(frozen=True)
class ChildJob:
    number: int
    cfg: Config
    key: str
    prefix: str
    indexes: range  # global payment indexes: references and the --mix card cycle match a P=1 run
    concurrency: int
    messages: multiprocessing.queues.Queue[ChildMessage]
    go: multiprocessing.synchronize.Event


class QueueSink:
    """Sending in a client process: outcomes go to the parent in batches."""

    def __init__(self, job: ChildJob) -> None:
        self._job = job
        self._ids: list[str] = []
        self._rejected = 0

    def accepted(self, payment_id: str) -> None:
        self._ids.append(payment_id)

    def rejected(self) -> None:
        self._rejected += 1

    def flush(self) -> None:
        if self._ids or self._rejected:
            message = ChildMessage("progress", self._job.number, ids=self._ids, rejected=self._rejected)
            self._job.messages.put(message)
            self._ids, self._rejected = [], 0

    async def flush_regularly(self) -> None:
        while True:
            await asyncio.sleep(CHILD_FLUSH_S)
            self.flush()


async def child_send(job: ChildJob) -> SendStats:
    stats = SendStats()
    sink = QueueSink(job)
    async with make_session(job.concurrency) as session:
        api = Api(session, job.cfg.url, job.key)
        flusher = asyncio.create_task(sink.flush_regularly())
        cpu_before = cpu_seconds()
        await send_all(api, job.cfg, stats, sink, job.prefix, job.indexes, job.concurrency)
        stats.cpu_s = cpu_seconds() - cpu_before
        flusher.cancel()
    sink.flush()
    return stats


def child_main(job: ChildJob) -> None:
    """Entry point of a client process (spawned)."""
    try:
        job.messages.put(ChildMessage("ready", job.number))
        job.go.wait()
        stats = run_loop(child_send(job))
        job.messages.put(ChildMessage("done", job.number, stats=stats))
    except KeyboardInterrupt:
        return  # the parent reports the interruption
    except Exception as exc:
        job.messages.put(ChildMessage("error", job.number, error=repr(exc)))


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal shares."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


class Children:
    """The client processes of one phase and their messages."""

    def __init__(self, cfg: Config, key: str, total: int, prefix: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.messages: multiprocessing.queues.Queue[ChildMessage] = ctx.Queue()
        self.go = ctx.Event()
        counts = split(total, cfg.processes)
        shares = split(cfg.concurrency, cfg.processes)
        starts = [sum(counts[:k]) for k in range(cfg.processes)]
        self.procs: list[multiprocessing.process.BaseProcess] = [
            ctx.Process(
                target=child_main,
                args=(
                    ChildJob(
                        number=k,
                        cfg=cfg,
                        key=key,
                        prefix=prefix,
                        indexes=range(starts[k], starts[k] + counts[k]),
                        concurrency=shares[k],
                        messages=self.messages,
                        go=self.go,
                    ),
                ),
                name=f"tender-bench-client-{k}",
                daemon=True,
            )
            for k in range(cfg.processes)
        ]

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

    def drain(self) -> list[ChildMessage]:
        got: list[ChildMessage] = []
        while True:
            try:
                got.append(self.messages.get_nowait())
            except queue.Empty:
                return got

    async def wait_for(self, kind: str, handle: Callable[[ChildMessage], None] | None = None) -> None:
        """Reads messages until every child has sent `kind`; `handle` sees every message."""
        waiting = set(range(len(self.procs)))
        while waiting:
            messages = self.drain()
            if not messages and (dead := [k for k in waiting if self.procs[k].exitcode is not None]):
                messages = self.drain()  # a child's last words may arrive just after it exits
                if not messages:
                    k = dead[0]
                    raise BenchError(f"client process {k} exited ({self.procs[k].exitcode}) before '{kind}'")
            for message in messages:
                if message.kind == "error":
                    raise BenchError(f"client process {message.child} failed: {message.error}")
                if message.kind == kind:
                    waiting.discard(message.child)
                if handle is not None:
                    handle(message)
            if waiting:
                await asyncio.sleep(CHILD_PUMP_S)

    def stop(self, *, now: bool = False) -> None:
        """Waits for the children to exit (they do after 'done'); `now` terminates them first."""
        for proc in self.procs:
            if now and proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        self.messages.close()


async def run_phase_processes(
    api: Api, cfg: Config, key: str, total: int, prefix: str, label: str, webhooks: Webhooks | None = None
) -> Phase:
    """Sending in `cfg.processes` spawned client processes; this process shows progress and polls."""
    children = Children(cfg, key, total, prefix)
    children.start()
    try:
        try:
            with console.status(f"starting {cfg.processes} client processes"):
                async with asyncio.timeout(CHILD_START_TIMEOUT_S):
                    await children.wait_for("ready")
        except TimeoutError as exc:
            raise BenchError(f"client processes not ready after {CHILD_START_TIMEOUT_S:.0f} s") from exc
        phase = Phase(total=total)

        async def send(display: Display) -> None:
            def handle(message: ChildMessage) -> None:
                for payment_id in message.ids:
                    phase.add(payment_id)
                if message.ids:
                    display.accepted(len(message.ids))
                if message.rejected:
                    display.rejected(message.rejected)
                if message.stats is not None:
                    phase.sent.merge(message.stats)

            children.go.set()
            await children.wait_for("done", handle)

        await measure(api, cfg, phase, label, send, webhooks)
    except BaseException:
        children.stop(now=True)
        raise
    children.stop()
    return phase


# --------------------------------------------------------------------------- webhooks: the receiver process


class Delivery(NamedTuple):
    """One webhook request whose signature verified."""

    webhook_id: str
    type: str
    object_id: str | None  # data.object.id
    updated: str | None  # data.object.updated (ISO 8601), when the object has one
    received_at: float  # wall clock (unix s) when the request arrived


@dataclass
class ReceiverMessage:
    kind: str  # ready | deliveries | stopped | error
    port: int = 0  # ready
    deliveries: list[Delivery] = field(default_factory=list)  # deliveries: since the last report
    invalid: int = 0  # deliveries: invalid signatures since the last report
    invalid_samples: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # stopped: the receiver's CPU time since it was ready (its start-up left out)
    error: str = ""  # error


class ReceiverState:
    """The receiver's request handler and what it has not reported yet."""

    def __init__(self, reports: multiprocessing.queues.Queue[ReceiverMessage]) -> None:
        self._reports = reports
        self._webhook: Webhook | None = None
        self._ready = asyncio.Event()  # set once the secret is known (or when stopping without one)
        self._deliveries: list[Delivery] = []
        self._invalid = 0
        self._samples: list[str] = []
        self._sampled = 0

    def use_secret(self, secret: str | None) -> None:
        self._webhook = Webhook(secret) if secret else None
        self._ready.set()

    async def handle(self, request: web.Request) -> web.Response:
        received_at = time.time()
        body = await request.read()
        await self._ready.wait()  # the secret comes right after the endpoint is made, before any event
        try:
            if self._webhook is None:
                raise ValueError("no secret")
            self._webhook.verify(body, dict(request.headers), json_parse=False)
            self._deliveries.append(delivery_of(request.headers["webhook-id"], orjson.loads(body), received_at))
        except Exception as exc:  # any refusal (bad signature, stale timestamp, malformed body) is counted
            self._invalid += 1
            if self._sampled < MAX_ERROR_SAMPLES:
                self._sampled += 1
                self._samples.append(f"{type(exc).__name__}: {exc}"[:ERROR_SAMPLE_CHARS])
        # 204 even when invalid: a refusal would only be retried, and the figures would count retries.
        return web.Response(status=204)

    def flush(self) -> None:
        if self._deliveries or self._invalid:
            message = ReceiverMessage(
                "deliveries", deliveries=self._deliveries, invalid=self._invalid, invalid_samples=self._samples
            )
            self._reports.put(message)
            self._deliveries, self._invalid, self._samples = [], 0, []

    async def flush_regularly(self) -> None:
        while True:
            await asyncio.sleep(RECEIVER_FLUSH_S)
            self.flush()


def delivery_of(webhook_id: str, event: Any, received_at: float) -> Delivery:
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ValueError("not an event")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    obj = obj if isinstance(obj, dict) else {}
    object_id, updated = obj.get("id"), obj.get("updated")
    return Delivery(
        webhook_id=webhook_id,
        type=event["type"],
        object_id=object_id if isinstance(object_id, str) else None,
        updated=updated if isinstance(updated, str) else None,
        received_at=received_at,
    )


async def receive(
    reports: multiprocessing.queues.Queue[ReceiverMessage], control: multiprocessing.queues.Queue[str | None]
) -> None:
    """Serves until told to stop: the secret comes first on `control`, then None for stop."""
    state = ReceiverState(reports)
    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, state.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # a free port, chosen by the kernel
    await web.SockSite(runner, sock, backlog=RECEIVER_BACKLOG).start()
    reports.put(ReceiverMessage("ready", port=int(sock.getsockname()[1])))
    cpu_before = cpu_seconds()
    loop = asyncio.get_running_loop()
    flusher = asyncio.create_task(state.flush_regularly())
    try:
        secret = await loop.run_in_executor(None, control.get)
        state.use_secret(secret)
        while secret is not None:
            secret = await loop.run_in_executor(None, control.get)
    finally:
        flusher.cancel()
        await runner.cleanup()
    state.flush()
    reports.put(ReceiverMessage("stopped", cpu_s=cpu_seconds() - cpu_before))


def receiver_main(
    reports: multiprocessing.queues.Queue[ReceiverMessage], control: multiprocessing.queues.Queue[str | None]
) -> None:
    """Entry point of the receiver process (spawned)."""
    try:
        run_loop(receive(reports, control))
    except KeyboardInterrupt:
        return  # the parent reports the interruption
    except Exception as exc:
        reports.put(ReceiverMessage("error", error=repr(exc)))


class Receiver:
    """The receiver process, seen from the bench process: every delivery it reported, in arrival order."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._reports: multiprocessing.queues.Queue[ReceiverMessage] = ctx.Queue()
        self._control: multiprocessing.queues.Queue[str | None] = ctx.Queue()
        self._proc = ctx.Process(
            target=receiver_main, args=(self._reports, self._control), name="tender-bench-receiver", daemon=True
        )
        self.port = 0
        self.deliveries: list[Delivery] = []
        self.invalid = 0
        self.invalid_samples: list[str] = []
        self.cpu_s: float | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    async def start(self) -> None:
        self._proc.start()
        deadline = time.perf_counter() + RECEIVER_START_TIMEOUT_S
        while not self.port:
            self.drain()
            if not self.port:
                if time.perf_counter() > deadline:
                    raise BenchError(f"the webhook receiver was not ready after {RECEIVER_START_TIMEOUT_S:.0f} s")
                await asyncio.sleep(CHILD_PUMP_S)

    def use_secret(self, secret: str) -> None:
        self._control.put(secret)

    def drain(self) -> list[Delivery]:
        """Takes in the receiver's reports; returns the deliveries that are new since the last call."""
        new: list[Delivery] = []
        while True:
            try:
                message = self._reports.get_nowait()
            except queue.Empty:
                break
            if message.kind == "error":
                raise BenchError(f"the webhook receiver failed: {message.error}")
            if message.kind == "ready":
                self.port = message.port
            elif message.kind == "stopped":
                self.cpu_s, self._stopped = message.cpu_s, True
            new.extend(message.deliveries)
            self.invalid += message.invalid
            for sample in message.invalid_samples:
                if len(self.invalid_samples) < MAX_ERROR_SAMPLES and sample not in self.invalid_samples:
                    self.invalid_samples.append(sample)
        if not new and not self._stopped and self._proc.exitcode is not None:
            raise BenchError(f"the webhook receiver exited ({self._proc.exitcode})")
        self.deliveries.extend(new)
        return new

    async def stop(self) -> list[Delivery]:
        """Stops the server and collects its last reports; returns the deliveries not drained before."""
        new: list[Delivery] = []
        if self._proc.is_alive():
            self._control.put(None)
            deadline = time.perf_counter() + RECEIVER_STOP_TIMEOUT_S
            while not self._stopped and time.perf_counter() < deadline:
                await asyncio.sleep(CHILD_PUMP_S)
                with contextlib.suppress(BenchError):
                    new.extend(self.drain())
        self.kill()
        return new

    def kill(self) -> None:
        """Ends the process (it exits by itself after 'stopped'; this is for errors and Ctrl-C)."""
        if self._proc.pid is None:
            return  # never started
        if self._proc.is_alive() and not self._stopped:
            with contextlib.suppress(ValueError, OSError):  # the queue may be closed already
                self._control.put(None)
        self._proc.join(timeout=2)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._reports.close()
        self._control.close()


# --------------------------------------------------------------------------- webhooks: endpoint and tracking


@dataclass
class Webhooks:
    """The run's webhook endpoint and receiver, and the final-status events seen so far per payment."""

    receiver: Receiver
    endpoint_id: str
    timeout: float  # --webhook-timeout: how long to wait for deliveries after the last completion
    finals: dict[str, dict[str, Delivery]] = field(default_factory=dict)  # payment -> event type -> first receipt
    matched: set[str] = field(default_factory=set)  # payments of the phase with a final-status event
    unmatched: set[str] = field(default_factory=set)  # with one, but not (yet) known as accepted by the bench
    wait_s: float = 0.0

    def take(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            if d.type in FINAL_EVENT_TYPES and d.object_id is not None:
                per_type = self.finals.setdefault(d.object_id, {})
                if d.type not in per_type:
                    per_type[d.type] = d
                    self.unmatched.add(d.object_id)

    async def track(self, phase: Phase, display: Display, polling_done: asyncio.Event) -> None:
        """Feeds the bar until polling is done and every completed payment's final event has come, or
        --webhook-timeout after that. An event may come before the bench has read its payment's 202."""
        started: float | None = None
        while True:
            self.take(self.receiver.drain())
            if self.unmatched:
                known = {payment_id for payment_id in self.unmatched if payment_id in phase.payments}
                self.matched |= known
                self.unmatched -= known
            display.delivered(len(self.matched))
            if polling_done.is_set():
                now = time.perf_counter()
                started = now if started is None else started
                expected = phase.payments.keys() - phase.pending
                if not expected - self.matched or now >= started + self.timeout:
                    self.wait_s = now - started
                    return
            await asyncio.sleep(CHILD_PUMP_S)


async def create_endpoint(api: Api, url: str, run_id: str) -> tuple[str, str]:
    """A webhook endpoint for every event type; returns (endpoint id, secret)."""
    body = {"url": url, "events": ["*"], "description": f"tender bench {run_id}"}
    try:
        status, raw, _ = await api.post("/v1/webhook_endpoints", body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"POST /v1/webhook_endpoints failed: {exc!r}") from exc
    if status != 201:
        private = status == 400 and b"not a public address" in raw
        hint = " (start Tender with TENDER_WEBHOOK_ALLOW_PRIVATE=true, as `make run` does)" if private else ""
        raise BenchError(f"POST /v1/webhook_endpoints answered {status}{hint}: {redact(text_of(raw))}")
    data = load_json(raw)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("secret"), str):
        raise BenchError("POST /v1/webhook_endpoints: no id/secret in the answer")
    return data["id"], data["secret"]


async def delete_endpoint(api: Api, endpoint_id: str) -> None:
    """Best effort: a failure is only reported (the endpoint would stay, pointing at a closed port)."""
    try:
        status, raw = await api.delete(f"/v1/webhook_endpoints/{endpoint_id}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        console.print(f"[yellow]warning:[/] could not delete webhook endpoint {endpoint_id}: {exc!r}")
        return
    if status != 200:
        console.print(
            f"[yellow]warning:[/] DELETE /v1/webhook_endpoints/{endpoint_id} answered {status}: {redact(text_of(raw))}"
        )


@contextlib.asynccontextmanager
async def webhooks_for(api: Api, cfg: Config, run_id: str) -> AsyncIterator[Webhooks | None]:
    """With --webhooks: a receiver process and an endpoint pointing at it for the block, then neither.
    On the way out the endpoint is deleted first, then the receiver stopped (its last reports kept)."""
    if not cfg.webhooks:
        yield None
        return
    receiver = Receiver()
    try:
        with console.status("starting the webhook receiver"):
            await receiver.start()
        endpoint_id, secret = await create_endpoint(api, receiver.url, run_id)
        receiver.use_secret(secret)
        console.print(f"webhook endpoint {endpoint_id} -> {receiver.url}", soft_wrap=True)
        hooks = Webhooks(receiver, endpoint_id, cfg.webhook_timeout)
        try:
            yield hooks
        finally:
            await delete_endpoint(api, endpoint_id)
        hooks.take(await receiver.stop())
    finally:
        receiver.kill()


# --------------------------------------------------------------------------- setup


async def check_reachable(api: Api) -> None:
    try:
        status, _ = await api.get("/healthz")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"cannot reach Tender at {api.base_url}: {exc}") from exc
    if status != 200:
        console.print(f"[yellow]warning:[/] GET /healthz answered {status}")


async def check_key(api: Api) -> None:
    """Fails fast on a wrong merchant key instead of sending N payments that all come back 401."""
    try:
        status, raw = await api.get("/v1/payments", {"limit": "1"})
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"GET /v1/payments failed: {exc!r}") from exc
    if status in (401, 403):
        raise BenchError(f"the merchant key was refused ({status}): {redact(text_of(raw))}")


async def create_merchant(api: Api, admin_key: str) -> tuple[str, str]:
    """Creates a fresh merchant; returns (merchant id, secret key)."""
    name = f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    try:
        status, raw, _ = await api.post("/admin/v1/merchants", {"name": name}, {"Authorization": f"Bearer {admin_key}"})
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"POST /admin/v1/merchants failed: {exc!r}") from exc
    if status != 201:
        raise BenchError(f"POST /admin/v1/merchants answered {status}: {redact(text_of(raw))}")
    data = load_json(raw)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("secret_key"), str):
        raise BenchError("POST /admin/v1/merchants: no id/secret_key in the answer")
    return data["id"], data["secret_key"]


# --------------------------------------------------------------------------- results


def summarize(cfg: Config, phase: Phase, run_id: str, event_loop: str) -> Results:
    sent = phase.sent
    accepted = len(phase.payments)
    completion_times = [p.completed_at for p in phase.payments.values() if p.completed_at is not None]
    completed = len(completion_times)
    send_wall_s = max(sent.send_ended - sent.send_started, 0.0)
    last_completion = max(completion_times, default=None)
    completed_per_s = None
    drain_s = None
    if last_completion is not None and sent.first_start is not None:
        span = last_completion - sent.first_start
        completed_per_s = completed / span if span > 0 else None
        drain_s = max(last_completion - sent.send_ended, 0.0)
    p50, p95, p99, p_max = percentiles_ms(sent.latencies_s)
    statuses = Counter(p.status for p in phase.payments.values())
    return Results(
        url=cfg.url,
        run_id=run_id,
        event_loop=event_loop,
        currency=cfg.currency,
        cards_last4=sorted({card[-4:] for card in cfg.cards}),
        payments=cfg.payments,
        concurrency=cfg.concurrency,
        processes=cfg.processes,
        warmup=cfg.warmup,
        accepted=accepted,
        rejected=dict(sent.rejected.most_common()),
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
        error_samples=sent.error_samples,
        client_cpu_sending_s=sent.cpu_s,
    )


def summarize_webhooks(hooks: Webhooks, phase: Phase) -> WebhookResults:
    """The delivery figures, once the receiver has stopped. The lag of a payment is from its `updated`
    (the final status's time, in the event's own copy of the payment) to the receipt of that event."""
    deliveries = hooks.receiver.deliveries
    unique = len({d.webhook_id for d in deliveries})
    times = [d.received_at for d in deliveries]
    window = max(times) - min(times) if times else 0.0
    lags: list[float] = []
    missing = 0
    for payment in phase.payments.values():
        if payment.status not in COMPLETE_STATUSES:
            continue  # never completed: no final event to expect
        event = hooks.finals.get(payment.id, {}).get(f"payment.{payment.status}")
        if event is None:
            missing += 1
            continue
        updated = parse_timestamp(event.updated) or payment.completed_at
        if updated is not None:
            lags.append(max(event.received_at - updated, 0.0))
    p50, p95, p99, p_max = percentiles_ms(lags)
    return WebhookResults(
        endpoint=hooks.endpoint_id,
        deliveries=len(deliveries),
        unique_events=unique,
        duplicates=len(deliveries) - unique,
        invalid_signatures=hooks.receiver.invalid,
        event_types=dict(Counter(d.type for d in deliveries).most_common()),
        delivery_window_s=window,
        deliveries_per_s=len(deliveries) / window if window > 0 else None,
        final_events=len(lags),
        missing_final_events=missing,
        lag_p50_ms=p50,
        lag_p95_ms=p95,
        lag_p99_ms=p99,
        lag_max_ms=p_max,
        wait_s=hooks.wait_s,
        receiver_cpu_s=hooks.receiver.cpu_s,
        invalid_samples=hooks.receiver.invalid_samples,
    )


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def counts(mapping: dict[str, int]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in mapping.items()) or "-"


def cpu_share(cpu_s: float, wall_s: float) -> str:
    """`9.1 s (89% of a core)`: over 100% means more than one core was busy."""
    share = f" ({cpu_s / wall_s:.0%} of a core)" if wall_s > 0 else ""
    return f"{cpu_s:,.1f} s{share}"


def results_table(r: Results) -> Table:
    table = Table(title=f"Tender bench {r.run_id}", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("payments", f"{r.payments:,}"),
        ("concurrency", str(r.concurrency) + (f" in {r.processes} processes" if r.processes > 1 else "")),
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
        ("client CPU, sending", cpu_share(r.client_cpu_sending_s, r.send_wall_s)),
        ("client CPU, whole run", cpu_share(r.client_cpu_s, r.run_wall_s) + f" in {r.run_wall_s:,.1f} s"),
    ]
    if r.poll_errors:
        rows.append(("poll errors", f"{r.poll_errors:,}"))
    if (w := r.webhooks) is not None:
        receiver_cpu = "-" if w.receiver_cpu_s is None else cpu_share(w.receiver_cpu_s, w.delivery_window_s)
        rows += [
            ("webhook deliveries", f"{w.deliveries:,} ({w.unique_events:,} unique events)"),
            ("webhook event types", counts(w.event_types)),
            ("webhook duplicates", f"{w.duplicates:,}"),
            ("webhook invalid signatures", f"{w.invalid_signatures:,}"),
            ("webhook delivery window", fmt(w.delivery_window_s, " s", 2)),
            ("deliveries/s", fmt(w.deliveries_per_s)),
            (
                "final events",
                f"{w.final_events:,}" + (f" ({w.missing_final_events:,} missing)" if w.missing_final_events else ""),
            ),
            ("delivery lag p50", fmt(w.lag_p50_ms, " ms")),
            ("delivery lag p95", fmt(w.lag_p95_ms, " ms")),
            ("delivery lag p99", fmt(w.lag_p99_ms, " ms")),
            ("delivery lag max", fmt(w.lag_max_ms, " ms")),
            ("waited for deliveries", fmt(w.wait_s, " s", 2)),
            ("receiver CPU", receiver_cpu),
        ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def report(r: Results, json_path: Path | None) -> None:
    console.print(results_table(r))
    if r.error_samples:
        console.print("[bold]first errors:[/]")
        for sample in r.error_samples:
            console.print(f"  {sample}", markup=False, highlight=False, soft_wrap=True)
    if r.webhooks is not None and r.webhooks.invalid_samples:
        console.print("[bold]first invalid webhook requests:[/]")
        for sample in r.webhooks.invalid_samples:
            console.print(f"  {sample}", markup=False, highlight=False, soft_wrap=True)
    if json_path is not None:
        json_path.write_text(json.dumps({**asdict(r), "ok": r.ok}, indent=2) + "\n")
        console.print(f"results written to {json_path}")


# --------------------------------------------------------------------------- entry point


async def bench(cfg: Config, key: str | None, admin_key: str | None) -> Results:
    event_loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    # Two pools: the senders' C connections, and one for everything else. A poller sharing the
    # senders' pool would be starved: a sender that frees a connection takes it back at once.
    async with make_session(1) as control, make_session(cfg.concurrency) as sending:
        api = Api(control, cfg.url)
        await check_reachable(api)
        if key is None:
            assert admin_key is not None
            merchant_id, key = await create_merchant(api, admin_key)
            console.print(f"created merchant {merchant_id}")
        api.use_key(key)
        senders = Api(sending, cfg.url, key)
        await check_key(api)
        run_id = uuid.uuid4().hex[:8]
        cards = f"{len(cfg.cards)} test cards" if len(cfg.cards) > 1 else f"card ...{cfg.cards[0][-4:]}"
        processes = f" in {cfg.processes} processes" if cfg.processes > 1 else ""
        console.print(
            f"run {run_id}: {cfg.payments:,} payments, {cfg.concurrency} clients{processes}, {cards}, {event_loop}"
        )
        if cfg.warmup > 0:
            # Always from this process, even with --processes: it only has to warm the server up.
            warm = await run_phase(api, senders, cfg, cfg.warmup, f"bench-{run_id}-warmup", "warmup ")
            incomplete = len(warm.pending)
            console.print(f"warmup (not measured): {len(warm.payments)} accepted, {incomplete} incomplete")
        prefix = f"bench-{run_id}"
        # After the warmup: its events are not delivered, and the figures are the measured payments'.
        async with webhooks_for(api, cfg, run_id) as hooks:
            if cfg.processes > 1:
                phase = await run_phase_processes(api, cfg, key, cfg.payments, prefix, "", hooks)
            else:
                phase = await run_phase(api, senders, cfg, cfg.payments, prefix, "", hooks)
            await read_final_statuses(api, phase)
        results = summarize(cfg, phase, run_id, event_loop)
        if hooks is not None:
            results.webhooks = summarize_webhooks(hooks, phase)
        return results


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
        "-p", "--processes", type=positive_int, default=1, help="client processes sharing -n and -c (default 1)"
    )
    parser.add_argument("--card", default=DEFAULT_CARD, help="card number for every payment")
    parser.add_argument("--mix", action="store_true", help="cycle through the test cards (declines too)")
    parser.add_argument("--currency", default="BRL")
    parser.add_argument("--wait-timeout", type=float, default=120.0, help="seconds to wait for completion")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write the results as JSON")
    parser.add_argument("--warmup", type=int, default=50, help="payments sent first and not measured")
    parser.add_argument(
        "--webhooks", action="store_true", help="receive Tender's webhooks locally and measure their delivery"
    )
    parser.add_argument(
        "--webhook-timeout",
        type=float,
        default=60.0,
        help="with --webhooks: seconds to wait for the final events after the last completion (default 60)",
    )
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
    started = time.perf_counter()
    cpu_before = cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN)
    args = parse_args(argv)
    cfg = Config(
        url=str(args.url).rstrip("/"),
        payments=args.payments,
        concurrency=args.concurrency,
        # every process needs at least one payment and one connection
        processes=min(args.processes, args.payments, args.concurrency),
        cards=MIX_CARDS if args.mix else (str(args.card),),
        currency=str(args.currency).upper(),
        wait_timeout=args.wait_timeout,
        warmup=max(args.warmup, 0),
        json_path=args.json_path,
        webhooks=args.webhooks,
        webhook_timeout=args.webhook_timeout,
    )
    if cfg.processes < args.processes:
        console.print(f"[yellow]note:[/] {cfg.processes} processes (at most one per payment and per client)")
    try:
        key, admin_key = resolve_keys(args)
        results = run_loop(bench(cfg, key, admin_key))
    except BenchError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    results.client_cpu_s = cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    results.run_wall_s = time.perf_counter() - started
    report(results, cfg.json_path)
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(main())
