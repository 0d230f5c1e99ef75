"""Fault test: the first processor dies mid-load and comes back.

A merchant routes every payment to `simulator`, then `simulator_b` (two real simulator processes, two workers).
While 20 clients send a few hundred payments at a steady pace, `simulator` is SIGKILLed (calls in flight are
cut: their outcome is unknown) and started again on the same port and record file a few seconds later. Then:
- every payment ends final, with the status its card asks for;
- no attempt reference reached both simulators, and each payment was charged (or declined) exactly once in
  all, at the processor the payment names: the unknown calls were looked up at `simulator`, never re-sent to
  `simulator_b`;
- payments moved to `simulator_b` during the outage (failovers), the circuit of `simulator` opened, and it was
  closed again after the restart (GET /admin/v1/processors, sampled every 250 ms);
- the ledger balances.

Figures (payments per processor, failovers, the breakers' timeline, durations) go to
test-artifacts/processor_outage.json with a chart (processor_outage.png) and a table in the log; the final
summary shows them too (tests/faults/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.faults import (
    ARTIFACTS,
    FIGURES_PROPERTY,
    PaymentSpec,
    check_against_simulator,
    client_session,
    drain,
    get_json,
    list_payments,
    payment_specs,
)
from tests.support.processors import BreakerSampler, Processors, create_merchant, running_processors, set_routing

pytestmark = [pytest.mark.e2e]

SEED = 20_261_207
PAYMENTS = int(os.environ.get("TENDER_OUTAGE_PAYMENTS", "300"))
RATE_PER_SECOND = 40.0  # a steady pace, so the outage falls mid-load with payments before, during and after it
CLIENTS = 20
KILL_AFTER_SECONDS = 3.0
DOWN_SECONDS = 3.0
OPEN_SECONDS = 1.5
TAIL_SECONDS = 40.0  # after the load, a payment every 0.3 s until the circuit of `simulator` closes, at most this long
DRAIN_DEADLINE_SECONDS = 60.0
TEST_DEADLINE_SECONDS = 150.0

# Slow enough answers that the kill cuts calls in flight: their outcome is unknown, looked up after the restart.
SIMULATOR = ["--latency-ms", "40", "--latency-jitter-ms", "80", "--seed", "3"]
ENV = {
    "TENDER_PROCESSOR_TIMEOUT_SECONDS": "1",
    "TENDER_WORKER_LEASE_SECONDS": "4",
    "TENDER_WORKER_RETRY_BASE_SECONDS": "0.2",
    "TENDER_WORKER_RETRY_CAP_SECONDS": "1",
    "TENDER_WORKER_MAX_ATTEMPTS": "60",
    "TENDER_WORKER_POLL_SECONDS": "0.5",
    "TENDER_CIRCUIT_FAILURES": "5",
    "TENDER_CIRCUIT_OPEN_SECONDS": str(OPEN_SECONDS),
    # One merchant sends each decline card dozens of times: the card-testing limit would refuse them.
    "TENDER_VELOCITY_CARD_DECLINES": "0",
    "LOG_LEVEL": "INFO",
}


async def post_until_accepted(session: aiohttp.ClientSession, spec: PaymentSpec) -> dict[str, Any]:
    """POST under the spec's Idempotency-Key until a 202 (a network error or a 409 in progress: again)."""
    headers = {"Idempotency-Key": spec.idempotency_key, "Content-Type": "application/json"}
    for _ in range(50):
        try:
            async with session.post("/v1/payments", data=spec.data, headers=headers) as r:
                body = orjson.loads(await r.read())
                status = r.status
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        if status == 409 and body.get("error", {}).get("type") == "idempotency_error":
            await asyncio.sleep(0.05)
            continue
        assert status == 202, (spec.reference, status, body)
        return dict(body)
    raise AssertionError(f"{spec.reference}: no 202 after 50 tries")


async def send_paced(session: aiohttp.ClientSession, specs: list[PaymentSpec], started: float) -> dict[str, Any]:
    """Payment i is sent at `started + i / RATE_PER_SECOND`, by at most CLIENTS clients at once."""
    slots = asyncio.Semaphore(CLIENTS)

    async def one(i: int, spec: PaymentSpec) -> tuple[str, dict[str, Any]]:
        await asyncio.sleep(max(0.0, started + i / RATE_PER_SECOND - time.monotonic()))
        async with slots:
            return spec.reference, await post_until_accepted(session, spec)

    return dict(await asyncio.gather(*(one(i, s) for i, s in enumerate(specs))))


async def tail_until_closed(
    session: aiohttp.ClientSession, sampler: BreakerSampler, spare: list[PaymentSpec]
) -> dict[str, Any]:
    """Payments keep coming, one every 0.3 s, until the sampler sees `simulator` closed again after its outage:
    a half-open circuit closes only on a probe, and a probe needs a payment. The tail's 202 bodies by reference."""
    sent: dict[str, Any] = {}
    deadline = time.monotonic() + TAIL_SECONDS
    while spare and time.monotonic() < deadline:
        statuses = [t["status"] for t in sampler.transitions() if t["processor"] == "simulator"]
        if "open" in statuses and statuses[-1] == "closed":
            break
        spec = spare.pop(0)
        sent[spec.reference] = await post_until_accepted(session, spec)
        await asyncio.sleep(0.3)
    return sent


async def outage(p: Processors, started: float, marks: dict[str, float]) -> None:
    first = p.simulators["simulator"]
    await asyncio.sleep(max(0.0, started + KILL_AFTER_SECONDS - time.monotonic()))
    await asyncio.to_thread(first.kill)
    marks["killed"] = time.monotonic() - started
    await asyncio.sleep(DOWN_SECONDS)
    await asyncio.to_thread(first.start)
    marks["restarted"] = time.monotonic() - started


def attempt_figures(database_url: str, payment_ids: list[str]) -> dict[str, Any]:
    """Authorization attempts by processor and status; payments that moved on (a `not_processed` attempt); attempts
    answered only after more than one call (the calls cut by the kill among them); and not_processed attempts that may
    have been sent, which must not exist (a call that may have charged is never failed over)."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT processor, status, count(*), count(DISTINCT payment_id),"
            " count(*) FILTER (WHERE status IN ('approved', 'declined') AND calls > 1),"
            " count(*) FILTER (WHERE status = 'not_processed' AND maybe_sent)"
            " FROM payment_attempts WHERE payment_id = ANY(%s) AND operation = 'authorize' GROUP BY 1, 2 ORDER BY 1, 2",
            (payment_ids,),
        ).fetchall()
    after_failure: Counter[str] = Counter()
    for processor, _, _, _, late, _ in rows:
        after_failure[processor] += int(late)
    return {
        "attempts": {f"{processor}/{status}": int(n) for processor, status, n, *_ in rows},
        "payments_failed_over": sum(int(payments) for _, status, _, payments, *_ in rows if status == "not_processed"),
        "answered_after_more_than_one_call": dict(after_failure),
        "not_processed_but_maybe_sent": sum(int(bad) for *_, bad in rows),
    }


def timeline_chart(path: Path, figures: dict[str, Any], samples: list[tuple[float, dict[str, str]]]) -> None:
    """The breakers' states over time, and payments per second by the processor that charged them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    level = {"closed": 0, "half_open": 1, "open": 2}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for name in ("simulator", "simulator_b"):
        points = [(t, level.get(s.get(name, ""), -1)) for t, s in samples if name in s]
        if points:
            top.step([t for t, _ in points], [v for _, v in points], where="post", label=name)
    top.set_yticks([0, 1, 2], ["closed", "half_open", "open"])
    top.set_title("Circuit breakers (GET /admin/v1/processors every 250 ms)")
    for ax in (top, bottom):
        ax.axvspan(figures["outage_s"]["killed"], figures["outage_s"]["restarted"], color="red", alpha=0.12)
    top.legend(loc="upper right")
    per_second: dict[str, Counter[int]] = figures["_created_per_second"]
    seconds = sorted({s for c in per_second.values() for s in c})
    base = [0] * len(seconds)
    for name, counts in sorted(per_second.items()):
        heights = [counts.get(s, 0) for s in seconds]
        bottom.bar(seconds, heights, bottom=base, width=0.9, align="edge", label=name)
        base = [a + b for a, b in zip(base, heights, strict=True)]
    bottom.set_xlabel("seconds since the load started (red: simulator down)")
    bottom.set_ylabel("payments created / s")
    bottom.set_title("Payments by the processor that charged them")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(figures: dict[str, Any]) -> str:
    outage, seconds, attempts = figures["outage_s"], figures["seconds"], figures["attempts"]
    rows = [
        ("payments", figures["payments"]),
        *((f"  at {name}", n) for name, n in sorted(figures["payments_by_processor"].items())),
        ("failed over (a not_processed attempt)", attempts["payments_failed_over"]),
        *(
            (f"answered after 2+ calls at {n}", c)
            for n, c in sorted(attempts["answered_after_more_than_one_call"].items())
        ),
        ("simulator killed / restarted at (s)", f"{outage.get('killed')} / {outage.get('restarted')}"),
        *((f"breaker {t['processor']} -> {t['status']} at (s)", t["t"]) for t in figures["breaker_transitions"]),
        (
            "load / tail / drain (s)",
            f"{seconds['load']} / {seconds['tail_until_closed']} / {seconds['drain_after_tail']}",
        ),
        ("ledger balanced", figures["ledger_balanced"]),
    ]
    width = max(len(str(k)) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


async def test_the_first_processor_dies_mid_load_and_comes_back(
    tender_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, record_property: Any
) -> None:
    t0 = time.monotonic()
    logs = tmp_path_factory.mktemp("faults-outage")
    specs = payment_specs(random.Random(SEED), PAYMENTS + int(TAIL_SECONDS / 0.3) + 1, f"outage-{SEED}")
    for s in specs:  # plain requests: the client-side faults are test_pipeline_faults' subject
        s.abandon_after, s.resend = None, False
    load, spare = specs[:PAYMENTS], specs[PAYMENTS:]
    marks: dict[str, float] = {}
    sims = {"simulator": SIMULATOR, "simulator_b": SIMULATOR}
    async with asyncio.timeout(TEST_DEADLINE_SECONDS):
        with running_processors(tender_env, logs, simulators=sims, env=ENV, workers=2) as p:
            t_ready = time.monotonic()
            merchant = await create_merchant(p, "Outage shop")
            await set_routing(p, merchant["id"], [{"processors": ["simulator", "simulator_b"]}])
            sampler = BreakerSampler(p)
            async with sampler.running(), client_session(p.api_url, merchant["secret_key"], CLIENTS) as session:
                wall_start = time.time()
                started = sampler.started = time.monotonic()
                killer = asyncio.create_task(outage(p, started, marks))
                accepted = await send_paced(session, load, started)
                t_loaded = time.monotonic()
                await killer
                accepted |= await tail_until_closed(session, sampler, spare)
                t_tail = time.monotonic()
                curve = await drain(
                    session,
                    DRAIN_DEADLINE_SECONDS,
                    [x.log for x in p.stack.processes],
                    tender_env["TENDER_DATABASE_URL"],
                )
                t_drained = time.monotonic()
                payments = {x["id"]: x for x in await list_payments(session)}
            async with client_session(p.api_url, tender_env["TENDER_ADMIN_KEY"], 2) as admin:
                ledger = await get_json(admin, "/admin/v1/ledger/verify")
            records = await p.all_records()
            stats = {name: await sim.stats() for name, sim in p.simulators.items()}

    ids = list(payments)
    attempts = await asyncio.to_thread(attempt_figures, tender_env["TENDER_DATABASE_URL"], ids)
    created_per_second: dict[str, Counter[int]] = {}
    for x in payments.values():
        second = int(datetime.fromisoformat(x["created"]).timestamp() - wall_start)
        created_per_second.setdefault(str(x["processor"]), Counter())[second] += 1
    transitions = sampler.transitions()
    figures: dict[str, Any] = {
        "seed": SEED,
        "payments": len(payments),
        "tail_payments": len(payments) - PAYMENTS,
        "payments_by_processor": dict(Counter(str(x["processor"]) for x in payments.values())),
        "by_status": dict(Counter(x["status"] for x in payments.values())),
        "attempts": attempts,
        "outage_s": {k: round(v, 2) for k, v in marks.items()},
        "breaker_transitions": transitions,
        "breaker_samples": len(sampler.samples),
        "breaker_sample_errors": sampler.errors,
        "simulators": {
            name: {k: s[k] for k in ("requests", "charged", "replays", "mismatches")} | {"faults": s["faults"]}
            for name, s in stats.items()
        },
        "ledger_balanced": ledger["balanced"],
        "seconds": {
            "startup": round(t_ready - t0, 2),
            "load": round(t_loaded - started, 2),
            "tail_until_closed": round(t_tail - t_loaded, 2),
            "drain_after_tail": round(t_drained - t_tail, 2),
            "total": round(time.monotonic() - t0, 2),
        },
        "processing_while_draining": curve[:: max(1, len(curve) // 12)],
        "logs": str(logs),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    artifact = {**figures, "breaker_timeline": sampler.samples}
    (ARTIFACTS / "processor_outage.json").write_text(json.dumps(artifact, indent=2) + "\n")
    timeline_chart(
        ARTIFACTS / "processor_outage.png", {**figures, "_created_per_second": created_per_second}, sampler.samples
    )
    record_property(
        FIGURES_PROPERTY, {k: figures[k] for k in ("payments_by_processor", "attempts", "outage_s", "seconds")}
    )
    print(f"\n== processor_outage (test-artifacts/processor_outage.json, .png)\n{table(figures)}")

    spec_by_reference = {s.reference: s for s in specs if s.reference in accepted}
    assert len(accepted) >= PAYMENTS and {x["reference"] for x in payments.values()} == set(spec_by_reference)
    assert {ref: body["id"] for ref, body in accepted.items()} == {x["reference"]: x["id"] for x in payments.values()}
    # Nothing charged twice: no reference reached both simulators, and across both each payment has exactly one
    # authorization, agreeing with Tender on status and amount, at the processor the payment names.
    references = [Counter(r["reference"] for r in rows) for rows in records.values()]
    assert not set(references[0]) & set(references[1]), "an attempt reference reached both simulators"
    merged = [r | {"_at": name} for name, rows in records.items() for r in rows if r["payment"] in payments]
    problems = check_against_simulator(payments, merged, spec_by_reference)
    problems += [
        f"{r['payment']}: charged at {r['_at']}, the payment names {payments[r['payment']]['processor']}"
        for r in merged
        if payments[r["payment"]]["processor"] != r["_at"]
    ]
    assert not problems, f"{len(problems)} problem(s), logs in {logs}:\n" + "\n".join(problems[:30])
    assert all(s["mismatches"] == 0 for s in stats.values()), stats
    # The outage did something: payments moved to simulator_b, its circuit opened, and closed once it was back.
    by_processor = figures["payments_by_processor"]
    assert by_processor.get("simulator", 0) > 0 and by_processor.get("simulator_b", 0) > 0, by_processor
    assert stats["simulator"]["charged"] > 0, "the restarted simulator took no payment"
    seen = [t["status"] for t in transitions if t["processor"] == "simulator"]
    assert "open" in seen, f"the circuit of simulator never showed open: {transitions}"
    assert seen[-1] == "closed" and seen.index("open") < len(seen) - 1, f"not closed after the restart: {transitions}"
    assert attempts["not_processed_but_maybe_sent"] == 0, "a call that may have charged was failed over"
    assert ledger["balanced"], ledger
