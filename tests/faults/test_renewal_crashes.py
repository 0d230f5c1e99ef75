"""Fault test: 2,000 subscriptions fall due at once while workers are SIGKILLed every 2-4 s (and replaced), the
renewal pump claiming small batches (20), so kills land in the middle of them. Whatever dies when: exactly one
invoice per subscription and period, exactly one payment per invoice attempt, at most one successful charge
per subscription and period at the simulator, every subscription with its next step (the next renewal, or
its dunning retry a day later), and the ledger balanced. The processor is sound here: the faults are the
kills (tests/faults/test_pipeline_faults.py has a faulty simulator too)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tender.domain.periods import period_start
from tests.support.faults import (
    FIGURES_PROPERTY,
    WORKER_ENV,
    client_session,
    create_merchant,
    get_json,
    live_workers,
    running_stack,
    simulator_view,
    worker_started,
)

pytestmark = pytest.mark.e2e

# TENDER_FAULT_SUBSCRIPTIONS scales it down on a small machine (a 2-CPU box shared with other work manages
# about 20 renewals and their charges a second while its workers are being killed; 2,000 settled in 94 s).
SUBSCRIPTIONS = int(os.environ.get("TENDER_FAULT_SUBSCRIPTIONS", "2000"))
DECLINED_EVERY = 20  # one subscription in 20 is on a card the issuer declines
SEED = 15
DEADLINE_SECONDS = 240
KILL_EVERY = (2.0, 4.0)
KILLS_AFTER_RENEWALS = 2  # the chaos goes on this many kills once every subscription is renewed (payments in flight)
# The processor is sound here (tests/faults/test_pipeline_faults.py has the faulty one): the faults are the
# kills, and each answer comes only by the pump's own call (no notifications racing it).
SIMULATOR = ["--latency-ms", "2", "--latency-jitter-ms", "10", "--no-notify-on-create", "--seed", str(SEED)]
ENV = {**WORKER_ENV, "TENDER_WORKER_BATCH_SIZE": "20", "TENDER_WORKER_POLL_SECONDS": "0.2"}


def sql(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, args)
        return list(cur.fetchall()) if cur.description else []


def due_subscriptions(url: str, merchant_id: str, customers: dict[str, str]) -> None:
    """SUBSCRIPTIONS monthly subscriptions whose first period ended a moment ago: all due for renewal now."""
    now = datetime.now(UTC)
    # The first period began a month ago and ended a minute ago (their dunning retries are a day after that).
    anchor = period_start(now - timedelta(minutes=1), -1, "month", 1, UTC)
    end = period_start(anchor, 1, "month", 1, UTC)
    assert now - timedelta(days=4) < end <= now
    sql(
        url,
        "INSERT INTO subscriptions (id, merchant_id, customer_id, amount, currency, interval, interval_count, status,"
        " billing_anchor, current_period_start, current_period_end, dunning_days, on_final_failure, next_run_at,"
        " created, updated)"
        " SELECT 'sub_fault' || lpad(n::text, 5, '0') || substr(md5(%s), 1, 8), %s,"
        "        CASE WHEN n %% %s = 0 THEN %s ELSE %s END, 1000 + n, 'BRL', 'month', 1, 'active',"
        "        %s, %s, %s, '{1,3,5}', 'unpaid', now(), %s, %s"
        " FROM generate_series(1, %s) AS n",
        merchant_id, merchant_id, DECLINED_EVERY, customers["declined"], customers["good"],
        anchor, anchor, end, anchor, anchor, SUBSCRIPTIONS,
    )  # fmt: skip


async def kill_workers(stack: Any, rng: random.Random, stop: asyncio.Event, url: str, merchant_id: str) -> list[int]:
    """SIGKILL one started worker every 2-4 s and start a replacement, until a few kills after the last
    renewal; returns, per kill, how many subscriptions still had no invoice for their new period."""
    kills: list[int] = []
    started = len(live_workers(stack))
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(*KILL_EVERY))
        workers = [
            w for w in sorted(live_workers(stack), key=lambda p: p.name) if "worker started" in w.log.read_text()
        ]
        if len([k for k in kills if k == 0]) >= KILLS_AFTER_RENEWALS:
            break
        if workers:
            waiting = await asyncio.to_thread(
                sql, url, "SELECT count(*) FROM subscriptions WHERE merchant_id = %s AND latest_invoice_id IS NULL",
                merchant_id,
            )  # fmt: skip
            victim = rng.choice(workers)
            os.kill(victim.popen.pid, signal.SIGKILL)
            await asyncio.to_thread(victim.popen.wait, 10)
            kills.append(int(waiting[0][0]))
            started += 1
            stack.start(f"worker-{started}", "worker")
    return kills


def settled(url: str, merchant_id: str) -> bool:
    """Every subscription has its new period's invoice, and every invoice's payment has ended."""
    [(unrenewed, in_flight)] = sql(
        url,
        "SELECT (SELECT count(*) FROM subscriptions WHERE merchant_id = %s AND latest_invoice_id IS NULL),"
        " (SELECT count(*) FROM payments WHERE merchant_id = %s AND invoice_id IS NOT NULL"
        "  AND status NOT IN ('succeeded', 'failed', 'canceled'))",
        merchant_id, merchant_id,
    )  # fmt: skip
    return bool(unrenewed == 0 and in_flight == 0)


def unsettled(url: str, merchant_id: str) -> dict[str, Any]:
    """What is not settled yet: subscriptions without their new invoice, payments of invoices not final."""
    return {
        "subscriptions": sql(
            url,
            "SELECT status, next_run_at > now() AS later, lease_token IS NOT NULL AS leased, tries, last_error,"
            " count(*) FROM subscriptions WHERE merchant_id = %s AND latest_invoice_id IS NULL GROUP BY 1, 2, 3, 4, 5",
            merchant_id,
        ),
        "payments": sql(
            url,
            "SELECT status, next_run_at > now() AS later, lease_token IS NOT NULL AS leased, tries, last_error,"
            " count(*) FROM payments WHERE merchant_id = %s AND invoice_id IS NOT NULL"
            " AND status NOT IN ('succeeded', 'failed', 'canceled') GROUP BY 1, 2, 3, 4, 5",
            merchant_id,
        ),
    }


async def test_renewals_survive_killed_workers(
    tender_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, record_property: Any
) -> None:
    url = tender_env["TENDER_DATABASE_URL"]
    logs = tmp_path_factory.mktemp("faults-renewals")
    async with asyncio.timeout(DEADLINE_SECONDS + 60):
        with running_stack(tender_env, logs, simulator=SIMULATOR, env=ENV, workers=2) as stack:
            merchant = await create_merchant(stack.api_url, tender_env["TENDER_ADMIN_KEY"], "Renewal fault shop")
            merchant_id = merchant["id"]
            customers = {}
            async with client_session(stack.api_url, merchant["secret_key"], 2) as shop:
                for kind, number in (("good", "4242424242424242"), ("declined", "4000000000009995")):
                    card = {"number": number, "exp_month": 12, "exp_year": 2034, "holder_name": "Fault"}
                    async with shop.post("/v1/payment_methods", json={"type": "card", "card": card}) as r:
                        assert r.status == 201, await r.text()
                        pm = (await r.json())["id"]
                    async with shop.post("/v1/customers", json={"payment_method": pm}) as r:
                        assert r.status == 201, await r.text()
                        customers[kind] = (await r.json())["id"]
            stop = asyncio.Event()
            t0 = time.monotonic()
            await asyncio.to_thread(due_subscriptions, url, merchant_id, customers)
            chaos = asyncio.create_task(kill_workers(stack, random.Random(SEED + 1), stop, url, merchant_id))
            try:
                while not await asyncio.to_thread(settled, url, merchant_id):
                    if time.monotonic() - t0 > DEADLINE_SECONDS:
                        left = await asyncio.to_thread(unsettled, url, merchant_id)
                        pytest.fail(f"not settled in time: {left}; logs in {logs}")
                    await asyncio.sleep(0.5)
            finally:
                stop.set()
                kills = await chaos
            t_settled = time.monotonic() - t0
            for w in live_workers(stack):
                await worker_started(w)
            async with client_session(stack.api_url, tender_env["TENDER_ADMIN_KEY"], 2) as admin:
                ledger = await get_json(admin, "/admin/v1/ledger/verify")
            records, sim_stats = await simulator_view(stack.simulator_url)

    invoices = sql(
        url,
        "SELECT i.subscription_id, i.period_start, i.status, i.attempt_count, s.current_period_start,"
        " s.status, s.next_run_at, s.current_period_end, s.customer_id"
        " FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id WHERE i.merchant_id = %s",
        merchant_id,
    )
    per_period = Counter((r[0], r[1]) for r in invoices)
    payments = sql(
        url,
        "SELECT p.id, p.invoice_id, p.status, p.reference FROM payments p WHERE p.merchant_id = %s"
        " AND p.invoice_id IS NOT NULL",
        merchant_id,
    )
    mine = {p[0]: p for p in payments}
    approved_per_invoice = Counter(mine[r["payment"]][1] for r in records if r["payment"] in mine
                                   and r["status"] == "approved")  # fmt: skip
    authorizations_per_payment = Counter(r["payment"] for r in records if r["payment"] in mine)
    by_status = Counter((r[2], r[5]) for r in invoices)
    figures = {
        "subscriptions": SUBSCRIPTIONS,
        "settled_in_s": round(t_settled, 1),
        "worker_kills": len(kills),
        "kills_mid_renewal": sum(1 for k in kills if k > 0),
        "unrenewed_at_each_kill": kills[:20],
        "invoices_by_status": {f"{i}/{s}": n for (i, s), n in by_status.items()},
        "simulator": {k: sim_stats[k] for k in ("requests", "charged", "replays", "mismatches")},
        "ledger_balanced": ledger["balanced"],
    }
    record_property(FIGURES_PROPERTY, figures)

    assert len(kills) >= 3 and figures["kills_mid_renewal"] >= 1, f"the chaos missed the renewals: {figures}"
    # Exactly one invoice per subscription and period: the new period's, starting where the old one ended.
    assert len(per_period) == SUBSCRIPTIONS and set(per_period.values()) == {1}
    assert all(r[1] == r[4] for r in invoices)
    # One payment per invoice (its first attempt), at most one approval at the simulator for it.
    assert Counter(p[1] for p in payments) == Counter(dict.fromkeys({p[1] for p in payments}, 1))
    assert len(payments) == SUBSCRIPTIONS
    assert all(n <= 1 for n in authorizations_per_payment.values())
    assert all(n <= 1 for n in approved_per_invoice.values())
    # Good cards paid (active, next renewal at the new period's end); declined ones past_due, retried in a day.
    declined = SUBSCRIPTIONS // DECLINED_EVERY
    assert by_status == Counter({("paid", "active"): SUBSCRIPTIONS - declined, ("open", "past_due"): declined})
    for row in invoices:
        if row[2] == "paid":
            assert row[6] == row[7]
        else:
            assert (row[3], row[6]) == (1, row[1] + timedelta(days=1))
    assert sum(approved_per_invoice.values()) == SUBSCRIPTIONS - declined
    assert ledger["balanced"] is True, ledger
