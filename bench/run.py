"""`make bench`: Tender's throughput on this machine, measured end to end in one command.

For each worker count asked for (`--workers 1,2,4`; default 1) it starts a fresh `tender up` in a temporary data dir
(embedded PostgreSQL, API, worker(s), simulator: the default `make run` processes), then:
1. the baseline: a bare FastAPI + psycopg endpoint doing one INSERT (bench/baseline.py), on the same PostgreSQL,
   loaded by wrk exactly like Tender (first run only; its figure makes results comparable across machines);
2. the load: wrk POSTs card payments (a fresh Idempotency-Key and reference each) for `--duration` seconds over
   `--connections` connections;
3. the drain: waits, with a live count, until no payment of the run is `processing`;
4. CPU per process from /proc over load + drain (bench/procstat.py), per completed payment.
It prints one table, writes JSON and a chart (PNG) of accepted and completed per second into bench/results/<stamp>/.

wrk comes from Debian's package (`make bench` installs it). Run on a quiet machine: anything else running counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procstat

ROOT = Path(__file__).resolve().parent.parent
console = Console()
CARD_BODY = (
    '{"amount": 1000, "currency": "BRL", "reference": "@REF@", "payment_method": {"type": "card", "card":'
    ' {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}}'
)


@dataclass
class Load:
    """One wrk run's figures."""

    requests: int
    seconds: float
    statuses: dict[str, int]
    errors: dict[str, int]
    latency_ms: dict[str, float]

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("2"))

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


@dataclass
class Run:
    workers: int
    load: Load
    accepted: int
    completed: int
    completed_per_s: float
    drain_seconds: float
    cpu_seconds: dict[str, float]
    cpu_ms_per_payment: dict[str, float]
    statuses: dict[str, int]
    accepted_series: list[int] = field(default_factory=list)
    completed_series: list[int] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"bench: the process behind {url} exited ({proc.returncode}); see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 (our own local URL)
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"bench: {url} not ready after {timeout:.0f} s")


def post_json(url: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        data: dict[str, Any] = json.loads(answer.read())
        return data


def stop(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def tender_up(
    workers: int, log_dir: Path, api_workers: int | None = None
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """A fresh `tender up` in a temporary data dir: (API URL, data dir, process)."""
    data_dir = Path(tempfile.mkdtemp(prefix="tender-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "TENDER_DATA_DIR": str(data_dir),
        "TENDER_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("TENDER_DATABASE_URL", None)
    # `tender up` sizes the processes' pools so that all of them fit the embedded PostgreSQL's connections.
    command = [sys.executable, "-m", "tender", "up"]
    if workers != 1:
        command += ["--workers", str(workers)]
    if api_workers is not None:
        command += ["--api-workers", str(api_workers)]
    log = (log_dir / f"tender-up-w{workers}.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", 180, proc)
        yield url, data_dir, proc
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def database_url(data_dir: Path) -> Iterator[str]:
    """The run's embedded PostgreSQL, joined like any Tender process does. The handle is let go on leaving, while
    `tender up` still holds its own, so the server stops with `tender up` (and never outlives its deleted dir)."""
    os.environ["TENDER_DATA_DIR"] = str(data_dir)
    from tender.config import Settings
    from tender.runtime import resolve_database

    resolved = resolve_database(Settings(data_dir=data_dir, database_url=None))
    try:
        yield resolved.url
    finally:
        if resolved.embedded is not None:
            resolved.embedded.cleanup()


def wrk(url: str, path: str, *, key: str, body: str, duration: int, connections: int, threads: int) -> Load:
    env = {**os.environ, "BENCH_PATH": path, "BENCH_KEY": key, "BENCH_BODY": body, "BENCH_RUN": uuid.uuid4().hex[:12]}
    script = Path(__file__).resolve().parent / "wrk" / "post.lua"
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s"]
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(f"wrk {path} ({connections} connections)", total=duration)
        proc = subprocess.Popen([*command, "-s", str(script), url + path], env=env, stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        while proc.poll() is None:
            bar.update(task, completed=min(duration, time.monotonic() - started))
            time.sleep(0.25)
    out = proc.stdout.read() if proc.stdout else ""
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise SystemExit(f"bench: wrk printed no result:\n{out}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    lat = {k: v / 1000 for k, v in data["latency_us"].items()}
    return Load(data["requests"], data["duration_us"] / 1e6, data["statuses"], data["errors"], lat)


def drain(db_url: str, merchant: str, timeout: float) -> float:
    """Wait until no payment of the merchant is processing; the seconds it took."""
    started = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn, Progress(console=console) as bar:
        task = bar.add_task("draining: payments still processing", total=None)
        while time.monotonic() - started < timeout:
            row = conn.execute(
                "SELECT count(*) FROM payments WHERE merchant_id = %s AND status = 'processing'", (merchant,)
            ).fetchone()
            left = int(row[0]) if row else 0
            bar.update(task, description=f"draining: {left} payments still processing")
            if left == 0:
                break
            time.sleep(0.5)
    return time.monotonic() - started


def series(db_url: str, merchant: str) -> tuple[list[int], list[int], int, int, float, dict[str, int]]:
    """Accepted and completed per second over the run, from the payments' own timestamps."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        first = conn.execute("SELECT min(created) FROM payments WHERE merchant_id = %s", (merchant,)).fetchone()
        start: datetime = first[0] if first and first[0] else datetime.now(UTC)

        def per_second(column: str, where: str) -> list[int]:
            rows = conn.execute(
                f"SELECT floor(extract(epoch FROM {column} - %s))::int AS s, count(*) FROM payments"
                f" WHERE merchant_id = %s {where} GROUP BY s ORDER BY s",
                (start, merchant),
            ).fetchall()
            out = [0] * ((rows[-1][0] + 1) if rows else 0)
            for second, n in rows:
                out[second] = n
            return out

        accepted = per_second("created", "")
        completed = per_second("updated", "AND status <> 'processing'")
        stats = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status <> 'processing'),"
            " extract(epoch FROM max(updated) FILTER (WHERE status <> 'processing') - min(created))"
            " FROM payments WHERE merchant_id = %s",
            (merchant,),
        ).fetchone()
        by_status: dict[str, int] = dict(
            conn.execute(
                "SELECT status, count(*) FROM payments WHERE merchant_id = %s GROUP BY status", (merchant,)
            ).fetchall()
        )
    assert stats is not None
    span = float(stats[2] or 0.0)
    return accepted, completed, int(stats[0]), int(stats[1]), (stats[1] / span if span else 0.0), by_status


def measure(workers: int, args: argparse.Namespace, out: Path, baseline: list[Load]) -> Run:
    console.rule(f"[bold]Tender with {workers} worker process(es)")
    with tender_up(workers, out, args.api_workers) as (url, data_dir, proc), database_url(data_dir) as db_url:
        admin_key = (data_dir / "admin.key").read_text().strip()
        if not baseline and not args.no_baseline:
            baseline.append(run_baseline(db_url, args))
        warm = post_json(f"{url}/admin/v1/merchants", {"name": "bench-warmup"}, admin_key)
        wrk(url, "/v1/payments", key=warm["secret_key"], body=CARD_BODY, duration=3, connections=16, threads=1)
        drain(db_url, warm["id"], args.drain_timeout)
        merchant = post_json(f"{url}/admin/v1/merchants", {"name": f"bench-w{workers}"}, admin_key)
        samples = [procstat.sample(proc.pid, str(data_dir))]
        load = wrk(
            url,
            "/v1/payments",
            key=merchant["secret_key"],
            body=CARD_BODY,
            duration=args.duration,
            connections=args.connections,
            threads=args.threads,
        )
        samples.append(procstat.sample(proc.pid, str(data_dir)))
        drained = drain(db_url, merchant["id"], args.drain_timeout)
        samples.append(procstat.sample(proc.pid, str(data_dir)))
        accepted_s, completed_s, accepted, completed, completed_rate, statuses = series(db_url, merchant["id"])
    cpu = cpu_used(samples)
    per_payment = {role: 1000 * s / completed for role, s in cpu.items()} if completed else {}
    return Run(
        workers, load, accepted, completed, completed_rate, drained, cpu, per_payment, statuses, accepted_s, completed_s
    )


def cpu_used(samples: list[dict[int, tuple[str, float]]]) -> dict[str, float]:
    """Per role: each process's last reading minus its first (0 for one born after the first sample)."""
    first: dict[int, float] = {}
    last: dict[int, tuple[str, float]] = {}
    for i, sample in enumerate(samples):
        for pid, (role, cpu) in sample.items():
            first.setdefault(pid, cpu if i == 0 else 0.0)
            last[pid] = (role, cpu)
    used: dict[str, float] = {}
    for pid, (role, cpu) in last.items():
        used[role] = used.get(role, 0.0) + max(0.0, cpu - first[pid])
    return dict(sorted(used.items()))


def run_baseline(db_url: str, args: argparse.Namespace) -> Load:
    console.rule("[bold]Baseline: bare FastAPI + psycopg, one INSERT per request")
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve().parent / "baseline.py"), "--port", str(port)]
    proc = subprocess.Popen([*command, "--database-url", db_url], start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/docs", 60, proc)
        return wrk(
            f"http://127.0.0.1:{port}",
            "/items",
            key="",
            body='{"reference": "@REF@", "amount": 1000, "currency": "BRL"}',
            duration=args.duration,
            connections=args.connections,
            threads=args.threads,
        )
    finally:
        stop(proc, grace=10)


def report(runs: list[Run], baseline: Load | None, out: Path, args: argparse.Namespace) -> None:
    table = Table(title=f"Tender on this machine: {args.duration} s of wrk, {args.connections} connections")
    table.add_column("figure")
    for r in runs:
        table.add_column(f"{r.workers} worker(s)", justify="right")
    rows: list[tuple[str, list[str]]] = [
        ("accepted (202)", [f"{r.load.ok}" for r in runs]),
        ("other answers", [f"{r.load.requests - r.load.ok} {_non_2xx(r.load)}" for r in runs]),
        ("accepted/s", [f"{r.load.rate:,.0f}" for r in runs]),
        (
            "accept latency p50 / p99 ms",
            [f"{r.load.latency_ms['p50']:.1f} / {r.load.latency_ms['p99']:.1f}" for r in runs],
        ),
        ("completed/s (final, payable, ledger, event)", [f"{r.completed_per_s:,.0f}" for r in runs]),
        ("drain after load, s", [f"{r.drain_seconds:.1f}" for r in runs]),
        ("statuses", [", ".join(f"{k} {v}" for k, v in sorted(r.statuses.items())) for r in runs]),
    ]
    if baseline is not None:
        rows.insert(3, ("share of the baseline's rate", [f"{100 * r.load.rate / baseline.rate:.0f} %" for r in runs]))
    roles = sorted({role for r in runs for role in r.cpu_ms_per_payment})
    for role in roles:
        rows.append((f"CPU ms per payment: {role}", [f"{r.cpu_ms_per_payment.get(role, 0):.2f}" for r in runs]))
    rows.append(("CPU ms per payment: all", [f"{sum(r.cpu_ms_per_payment.values()):.2f}" for r in runs]))
    for name, cells in rows:
        table.add_row(name, *cells)
    if baseline is not None:
        console.print(
            f"Baseline (bare FastAPI + psycopg, one INSERT): [bold]{baseline.rate:,.0f}[/] requests/s, "
            f"p50 {baseline.latency_ms['p50']:.1f} ms, p99 {baseline.latency_ms['p99']:.1f} ms"
        )
    console.print(table)
    payload = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
        "settings": {
            "duration": args.duration,
            "connections": args.connections,
            "threads": args.threads,
            "api_workers": args.api_workers,
        },
        "baseline": asdict(baseline) if baseline else None,
        "runs": [{**asdict(r), "accepted_per_s": r.load.rate} for r in runs],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    chart(runs, out / "throughput.png")
    console.print(f"Written: {out / 'results.json'}, {out / 'throughput.png'}")


def _non_2xx(load: Load) -> str:
    bad = {k: v for k, v in load.statuses.items() if not k.startswith("2")}
    errors = {k: v for k, v in load.errors.items() if v}
    return f"({', '.join(f'{k}: {v}' for k, v in {**bad, **errors}.items())})" if bad or errors else ""


def chart(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 3.2 * len(runs)), squeeze=False)
    for ax, r in zip(axes[:, 0], runs, strict=True):
        ax.plot(r.accepted_series, label="accepted/s", linestyle="-", marker=".")
        ax.plot(r.completed_series, label="completed/s", linestyle="--", marker="x")
        ax.set_title(f"{r.workers} worker(s): {r.load.rate:,.0f} accepted/s, {r.completed_per_s:,.0f} completed/s")
        ax.set_xlabel("seconds since the first payment")
        ax.set_ylabel("payments per second")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description="Tender's throughput on this machine, end to end")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per run (default 20)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", default="1", help="worker process counts to run, e.g. 1,2,4 (default 1)")
    parser.add_argument(
        "--api-workers", type=int, default=None, help="API processes (default: what `tender up` chooses)"
    )
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        console.print("bench: wrk is missing (Debian: apt-get install wrk; `make bench` does it)")
        return 2
    out = ROOT / "bench" / "results" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    baseline: list[Load] = []
    runs = [measure(int(w), args, out, baseline) for w in args.workers.split(",")]
    report(runs, baseline[0] if baseline else None, out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
