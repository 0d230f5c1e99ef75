"""Reconciliation against the simulator's own records, with real mismatches seeded on either side: a charge made
directly at the simulator, a refund made directly there, a refund Tender records that the simulator never saw, an
amount the acquirer's books disagree on; and what must match: a succeeded, an authorized and a declined payment, a
refund made through Tender, a payment that failed over (its not_processed attempt is not missing).

Each test runs its own simulator under a processor name of its own, so the day's report is exactly its records
(the session's database holds other tests' payments at `simulator`). The CLI is run as `tender reconcile`."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from tender.processors.simulator import SimulatorProcessor
from tender.services import reconciliation
from tender.simulator import SimulatorConfig, create_app
from tests.support.api import auth
from tests.support.money import admin
from tests.support.payments import authorizer, drain, get, pay
from tests.support.processes import tender
from tests.support.refunds import drain_refunds, refund
from tests.support.refunds import pump as refund_pump
from tests.support.serve import serve

pytestmark = pytest.mark.integration

DECLINED = "4000000000009995"


@dataclass
class Acquirer:
    """A simulator of the test's own, on under the processor name `name`, and Tender's API on it."""

    name: str
    url: str
    app: Any
    processor: SimulatorProcessor
    container: Any
    api: httpx.AsyncClient

    async def charge(self, reference: str, amount: int = 1500, number: str = "4242424242424242") -> dict[str, Any]:
        """An authorization made directly at the simulator, as a charge Tender never asked for."""
        body = {
            "reference": reference,
            "payment": "pay_elsewhere",
            "amount": amount,
            "currency": "BRL",
            "capture": True,
            "card": {"number": number, "exp_month": 10, "exp_year": 2030, "cvc": "123"},
        }
        async with httpx.AsyncClient(base_url=self.url) as sim:
            r = await sim.post("/v1/authorizations", json=body, headers={"Idempotency-Key": reference})
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def refund_directly(self, reference: str, authorization: str, amount: int) -> None:
        async with httpx.AsyncClient(base_url=self.url) as sim:
            body = {"reference": reference, "authorization": authorization, "amount": amount}
            r = await sim.post("/v1/refunds", json=body, headers={"Idempotency-Key": reference})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text

    def books(self, sql: str, *args: Any) -> None:
        """Change the acquirer's own records (its sqlite store), as books that drifted from Tender's."""
        store = self.app.state.simulator.store
        with store._lock:
            store._db.execute(sql, args)

    async def reconcile(self, day: date | None = None) -> reconciliation.RunResult:
        return await reconciliation.run(self.container.db, self.processor, day or today(), UTC)


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture
async def acquirer(container: Any) -> AsyncIterator[Acquirer]:
    from tender.api.app import create_app as create_api
    from tender.bootstrap import Container

    name = f"sim_{uuid.uuid4().hex[:8]}"
    app = create_app(SimulatorConfig(public_url="http://simulator.test"))
    async with serve(app) as url:
        processor = SimulatorProcessor(url)
        processor.name = name  # as TENDER_SIMULATOR_INSTANCES names another instance
        processors = {**container.processors, name: processor}
        own = Container(settings=container.settings, db=container.db, vault=container.vault, processors=processors)
        transport = httpx.ASGITransport(app=create_api(own))
        async with httpx.AsyncClient(transport=transport, base_url="http://tender.test") as api:
            yield Acquirer(name, url, app, processor, own, api)
        await processor.aclose()


async def paid(a: Acquirer, merchant: Any, number: str = "4242424242424242", **kw: Any) -> dict[str, Any]:
    created = await pay(a.api, merchant, number, processor=a.name, **kw)
    await drain(authorizer(a.container))
    return await get(a.api, merchant, created["id"])


async def attempt_id(a: Acquirer, payment_id: str) -> str:
    async with a.container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM payment_attempts WHERE payment_id = %s AND operation = 'authorize'", (payment_id,)
        )
        [row] = await cur.fetchall()
    return str(row["id"])


def refs(findings: list[dict[str, Any]]) -> list[str | None]:
    return sorted(f["reference"] for f in findings)


async def test_what_matches_and_the_seeded_mismatches_on_either_side(acquirer: Acquirer, merchant: Any) -> None:
    a = acquirer
    succeeded = await paid(a, merchant)
    authorized = await paid(a, merchant, capture=False)
    declined = await paid(a, merchant, DECLINED)
    drifted = await paid(a, merchant)
    refunded = await paid(a, merchant)
    assert [p["status"] for p in (succeeded, authorized, declined, drifted, refunded)] == [
        "succeeded", "requires_capture", "failed", "succeeded", "succeeded",
    ]  # fmt: skip
    r = await refund(a.api, merchant, {"payment": refunded["id"], "amount": 700})
    assert r.status_code == 202, r.text
    await drain_refunds(refund_pump(a.container))
    through_tender = r.json()["id"]

    # Seeded: a charge made directly at the acquirer, and a refund made there of one of Tender's payments.
    direct = await a.charge("att_direct_" + uuid.uuid4().hex[:8])
    direct_refund = "re_direct_" + uuid.uuid4().hex[:8]
    await a.refund_directly(direct_refund, await attempt_id(a, succeeded["id"]), 300)
    # A refund Tender records as succeeded that never reached the acquirer.
    tender_only = "re_tender_only_" + uuid.uuid4().hex[:8]
    async with a.container.db.connection() as conn:
        await conn.execute(
            "INSERT INTO refunds (id, merchant_id, payment_id, amount, currency, status, processor, created, updated)"
            " VALUES (%s, %s, %s, 200, 'BRL', 'succeeded', %s, now(), now())",
            (tender_only, merchant.merchant.id, refunded["id"], a.name),
        )
    # The acquirer's books say it charged 2400 of the drifted payment's 2500.
    drifted_attempt = await attempt_id(a, drifted["id"])
    a.books("UPDATE authorizations SET amount = 2400, amount_captured = 2400 WHERE reference = ?", drifted_attempt)

    result = await a.reconcile()
    assert result.report is not None
    report = reconciliation.report_object(result.report)
    assert report["processor"] == a.name and report["date"] == today().isoformat()
    # succeeded, authorized, declined (declined at both), refunded and its refund through Tender
    assert report["matched"] == 5
    kinds = {f["reference"]: (f["type"], f["processor_id"]) for f in report["missing_in_tender"]}
    assert kinds == {direct["reference"]: ("charge", direct["id"]), direct_refund: ("refund", kinds[direct_refund][1])}
    assert kinds[direct_refund][1].startswith("simop_")
    [missing] = report["missing_at_processor"]
    assert (missing["type"], missing["reference"], missing["payment"]) == ("refund", tender_only, refunded["id"])
    [mismatched] = report["mismatched"]
    assert (mismatched["reference"], mismatched["payment"]) == (drifted_attempt, drifted["id"])
    assert mismatched["differences"] == [
        {"field": "amount", "tender": 2500, "processor": 2400},
        {"field": "amount_captured", "tender": 2500, "processor": 2400},
    ]
    assert through_tender not in refs(report["missing_at_processor"] + report["missing_in_tender"])

    # The run is stored with the same figures, and announced to the operator.
    async with a.container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT data FROM operator_events WHERE type = 'reconciliation.completed' AND data->>'reconciliation' = %s",
            (result.run_id,),
        )
        [event] = await cur.fetchall()
    assert event["data"]["mismatched"] == 1 and event["data"]["missing_in_tender"] == 2


async def test_a_failed_over_payment_is_not_missing_at_the_first_processor(
    acquirer: Acquirer, container: Any, merchant: Any, api: Any
) -> None:
    """The payment ran at `simulator` after its attempt at this acquirer was `not_processed`: the acquirer never
    saw it, and reconciliation must not call it missing there (nor anywhere else)."""
    a = acquirer
    created = await pay(api, merchant)
    await drain(authorizer(container))
    payment = await get(api, merchant, created["id"])
    assert payment["status"] == "succeeded"
    async with container.db.connection() as conn:
        await conn.execute(
            "INSERT INTO payment_attempts (id, payment_id, operation, processor, status, calls, created, finished)"
            " VALUES (%s, %s, 'authorize', %s, 'not_processed', 1, now() - interval '1 second', now())",
            ("att_" + uuid.uuid4().hex, payment["id"], a.name),
        )
    ours = await a.charge("att_ours_" + uuid.uuid4().hex[:8])
    result = await a.reconcile()
    assert result.report is not None
    report = reconciliation.report_object(result.report)
    assert report["missing_at_processor"] == [] and report["mismatched"] == []
    assert refs(report["missing_in_tender"]) == [ours["reference"]]  # the day's other finding, for contrast


async def test_a_clean_day_and_an_unreadable_processor(acquirer: Acquirer, merchant: Any) -> None:
    a = acquirer
    await paid(a, merchant)
    clean = await a.reconcile()
    assert clean.report is not None and clean.report.clean and clean.report.matched == 1
    # Yesterday: nothing on either side, nothing off.
    empty = await a.reconcile(today() - timedelta(days=1))
    assert empty.report is not None and (empty.report.matched, empty.report.clean) == (0, True)

    down = SimulatorProcessor("http://127.0.0.1:9")  # nothing listens on the discard port
    down.name = a.name
    try:
        failed = await reconciliation.run(a.container.db, down, today(), UTC)
    finally:
        await down.aclose()
    assert failed.report is None and failed.error and "could not be read" in failed.error
    stored = await reconciliation.get_run(a.container.db, failed.run_id)
    assert (stored["status"], stored["matched"], stored["trigger"]) == ("failed", 0, "cli")


async def test_the_admin_api_lists_runs_with_their_figures(
    acquirer: Acquirer, merchant: Any, api: Any, settings: Any
) -> None:
    a = acquirer
    await paid(a, merchant)
    direct = await a.charge("att_direct_" + uuid.uuid4().hex[:8])
    first = await a.reconcile()
    second = await a.reconcile()
    r = await api.get("/admin/v1/reconciliations", params={"processor": a.name}, headers=admin(settings))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["object"], body["has_more"]) == ("list", False)
    assert [run["id"] for run in body["data"]] == [second.run_id, first.run_id]  # newest first
    run = body["data"][0]
    assert run["id"].startswith("rec_") and run["object"] == "reconciliation"
    assert (run["processor"], run["date"], run["trigger"], run["status"]) == (
        a.name,
        today().isoformat(),
        "cli",
        "completed",
    )
    assert run["matched"] == 1 and [f["reference"] for f in run["missing_in_tender"]] == [direct["reference"]]
    assert run["missing_at_processor"] == [] and run["mismatched"] == [] and run["created"].endswith("Z")

    page = (
        await api.get("/admin/v1/reconciliations", params={"processor": a.name, "limit": 1}, headers=admin(settings))
    ).json()
    assert ([d["id"] for d in page["data"]], page["has_more"]) == ([second.run_id], True)
    one = await api.get(f"/admin/v1/reconciliations/{first.run_id}", headers=admin(settings))
    assert one.status_code == 200 and one.json()["id"] == first.run_id
    assert (await api.get("/admin/v1/reconciliations/rec_nope", headers=admin(settings))).status_code == 404
    assert (await api.get("/admin/v1/reconciliations", headers=auth(merchant.secret_key))).status_code in (401, 403)


async def test_the_workers_daily_run_happens_once_across_workers(acquirer: Acquirer, merchant: Any) -> None:
    a = acquirer
    await paid(a, merchant)
    processors = {a.name: a.processor}
    db = a.container.db

    def worker() -> reconciliation.DailyRun:
        return reconciliation.DailyRun(db, processors, tz=UTC, after=timedelta(minutes=30), stale=timedelta(minutes=30))

    day = today()
    too_early = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + timedelta(minutes=10)
    assert await worker().run_batch(10, now=too_early) == 0
    after_midnight = too_early + timedelta(minutes=30)
    one, two = worker(), worker()
    assert await one.run_batch(10, now=after_midnight) == 1
    assert await two.run_batch(10, now=after_midnight) == 0  # the other worker's, done
    assert await one.run_batch(10, now=after_midnight) == 0
    runs, _ = await reconciliation.list_runs(db, processor=a.name)
    assert [(r["trigger"], r["date"], r["status"], r["matched"]) for r in runs] == [
        ("worker", day.isoformat(), "completed", 1)
    ]


async def test_days_the_workers_missed_are_run_later_oldest_first_within_the_window(
    acquirer: Acquirer, merchant: Any
) -> None:
    """The workers ran on day-5 (for day-6), then none ran until day+1: day-5 .. day are caught up, oldest first, at
    most `limit` a look."""
    a = acquirer
    await paid(a, merchant)  # today's: the only day with a payment
    day = today()

    def at(d: date) -> datetime:  # an hour after that day's midnight
        return datetime.combine(d, datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)

    def worker(catch_up_days: int = 7) -> reconciliation.DailyRun:
        return reconciliation.DailyRun(
            a.container.db, {a.name: a.processor}, tz=UTC, after=timedelta(minutes=30),
            stale=timedelta(minutes=30), catch_up_days=catch_up_days,
        )  # fmt: skip

    async def worker_days() -> list[tuple[str, str, int]]:
        runs, _ = await reconciliation.list_runs(a.container.db, processor=a.name)
        return sorted((r["date"], r["status"], r["matched"]) for r in runs if r["trigger"] == "worker")

    # The first run ever reconciles yesterday only: nothing before the processor's first run.
    assert await worker().run_batch(10, now=at(day - timedelta(days=5))) == 1
    assert [d for d, _, _ in await worker_days()] == [(day - timedelta(days=6)).isoformat()]
    # No worker until day+1: the five days in between and yesterday, oldest first, two a look.
    late = worker()
    assert await late.run_batch(2, now=at(day + timedelta(days=1))) == 2
    assert [d for d, _, _ in await worker_days()] == [(day - timedelta(days=n)).isoformat() for n in (6, 5, 4)]
    assert await late.run_batch(10, now=at(day + timedelta(days=1))) == 4
    assert await late.run_batch(10, now=at(day + timedelta(days=1))) == 0  # all done
    assert await worker_days() == [
        *(((day - timedelta(days=n)).isoformat(), "completed", 0) for n in (6, 5, 4, 3, 2, 1)),
        (day.isoformat(), "completed", 1),
    ]


async def test_a_missed_day_older_than_the_window_is_left_and_a_failed_one_is_retried(
    acquirer: Acquirer, merchant: Any
) -> None:
    a = acquirer
    day = today()

    def at(d: date) -> datetime:
        return datetime.combine(d, datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)

    def worker() -> reconciliation.DailyRun:
        return reconciliation.DailyRun(
            a.container.db, {a.name: a.processor}, tz=UTC, after=timedelta(minutes=30),
            stale=timedelta(minutes=30), retry=timedelta(0), catch_up_days=3,
        )  # fmt: skip

    assert await worker().run_batch(10, now=at(day - timedelta(days=9))) == 1  # the first run: day-10
    async with a.container.db.connection() as conn:  # day-1's run failed (the processor was unreadable)
        await conn.execute(
            "INSERT INTO reconciliation_runs (id, processor, day, trigger, status, finished, error)"
            " VALUES (%s, %s, %s, 'worker', 'failed', now() - interval '1 hour', 'records unavailable')",
            ("rec_failed_" + uuid.uuid4().hex[:8], a.name, day - timedelta(days=1)),
        )
    # At day+1 the window is day-2 .. day: day-9 .. day-3 are too old; day-2 runs, day-1 again, then day.
    assert await worker().run_batch(10, now=at(day + timedelta(days=1))) == 3
    async with a.container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT day, status, tries FROM reconciliation_runs"
            " WHERE processor = %s AND trigger = 'worker' ORDER BY day",
            (a.name,),
        )
        rows = [(r["day"], r["status"], r["tries"]) for r in await cur.fetchall()]
    assert rows == [
        (day - timedelta(days=10), "completed", 1),
        (day - timedelta(days=2), "completed", 1),
        (day - timedelta(days=1), "completed", 2),
        (day, "completed", 1),
    ]


async def test_a_daily_run_left_running_by_a_crash_is_run_again(acquirer: Acquirer, merchant: Any) -> None:
    a = acquirer
    await paid(a, merchant)
    day = today()
    async with a.container.db.connection() as conn:
        await conn.execute(
            "INSERT INTO reconciliation_runs (id, processor, day, trigger, started)"
            " VALUES (%s, %s, %s, 'worker', now() - interval '2 hours')",
            ("rec_crashed_" + uuid.uuid4().hex[:8], a.name, day),
        )
    now = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)
    fresh = reconciliation.DailyRun(
        a.container.db, {a.name: a.processor}, tz=UTC, after=timedelta(minutes=30), stale=timedelta(hours=3)
    )
    assert await fresh.run_batch(10, now=now) == 0  # still within its time: someone may be running it
    stale = reconciliation.DailyRun(
        a.container.db, {a.name: a.processor}, tz=UTC, after=timedelta(minutes=30), stale=timedelta(hours=1)
    )
    assert await stale.run_batch(10, now=now) == 1
    async with a.container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT status, tries, matched FROM reconciliation_runs WHERE processor = %s", (a.name,)
        )
        assert [dict(r) for r in await cur.fetchall()] == [{"status": "completed", "tries": 2, "matched": 1}]


async def test_tender_reconcile_exit_codes_and_json(acquirer: Acquirer, tender_env: dict[str, str]) -> None:
    """The CLI against the acquirer as TENDER_SIMULATOR_URL (the `simulator` processor): a charge made only there
    makes the day off (exit 1; other tests' simulator payments are off too, at another simulator); a day with
    nothing is clean (exit 0); usage errors exit 2."""
    a = acquirer
    direct = await a.charge("att_cli_" + uuid.uuid4().hex[:8])
    env = {**tender_env, "TENDER_SIMULATOR_URL": a.url}
    off = await tender(env, "reconcile", "--processor", "simulator", "--date", today().isoformat(), "--json")
    assert off.returncode == 1, off.stderr
    report = json.loads(off.stdout)
    assert set(report) == {"processor", "date", "matched", "missing_in_tender", "missing_at_processor", "mismatched"}
    assert direct["reference"] in refs(report["missing_in_tender"])
    table = await tender(env, "reconcile", "--processor", "simulator", "--date", today().isoformat())
    assert table.returncode == 1 and direct["reference"] in table.stdout and "missing in Tender" in table.stdout

    clean = await tender(env, "reconcile", "--processor", "simulator", "--date", "2020-01-01", "--json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout) == {
        "processor": "simulator", "date": "2020-01-01", "matched": 0,
        "missing_in_tender": [], "missing_at_processor": [], "mismatched": [],
    }  # fmt: skip
    plain = await tender(env, "reconcile", "--processor", "simulator", "--date", "2020-01-01")
    assert plain.returncode == 0 and "all records match" in plain.stdout

    for args in (
        ("--processor", "nope", "--date", "2020-01-01"),
        ("--processor", "simulator", "--date", "2020-13-01"),
        ("--processor", "simulator", "--date", "yesterday"),
        ("--processor", "simulator", "--date", (today() + timedelta(days=2)).isoformat()),
        ("--processor", "simulator"),
    ):
        usage = await tender(env, "reconcile", *args)
        assert usage.returncode == 2, (args, usage.stdout, usage.stderr)


async def test_the_simulators_records_come_page_by_page(acquirer: Acquirer, merchant: Any) -> None:
    """GET /v1/records: a window's authorizations and operations, oldest first, `starting_after` the last id seen;
    the client reads every page (a captured payment is one authorization; its refund one more record)."""
    a = acquirer
    made = [await a.charge(f"att_page_{i}_{uuid.uuid4().hex[:6]}") for i in range(3)]
    await a.refund_directly("re_page_" + uuid.uuid4().hex[:6], made[0]["reference"], 100)
    seen: list[str] = []
    after = ""
    async with httpx.AsyncClient(base_url=a.url) as sim:
        while True:
            page = (
                await sim.get("/v1/records", params={"limit": 2, **({"starting_after": after} if after else {})})
            ).json()
            seen += [r["id"] for r in page["data"]]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        assert (await sim.get("/v1/records", params={"limit": "many"})).status_code == 400
        assert (await sim.get("/v1/records", params={"created_gte": "-1"})).status_code == 400
        future = int(datetime.now(UTC).timestamp()) + 3600
        assert (await sim.get("/v1/records", params={"created_gte": future})).json()["data"] == []
    # (one second's records come in id order, which is random: compare sets)
    assert len(seen) == 4 == len(set(seen)) and {m["id"] for m in made} < set(seen)
    now = datetime.now(UTC)
    records = await a.processor.list_records(now - timedelta(minutes=5), now + timedelta(minutes=5))
    assert sorted(r.processor_id or "" for r in records) == sorted(seen)


async def test_records_far_apart_in_time_still_pair(acquirer: Acquirer, merchant: Any) -> None:
    """Tender's and the processor's times of one charge can be hours apart: an attempt written at acceptance and
    sent when the processor came back, or answered long after (3-D Secure). Neither is called missing."""
    a = acquirer
    day = today() - timedelta(days=1)
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    early, late = await paid(a, merchant), await paid(a, merchant)
    early_attempt, late_attempt = await attempt_id(a, early["id"]), await attempt_id(a, late["id"])
    async with a.container.db.connection() as conn:
        # Written three days before the processor recorded it (at noon of the day reconciled).
        await conn.execute(
            "UPDATE payment_attempts SET created = %s WHERE id = %s", (start - timedelta(days=3), early_attempt)
        )
        # Written at noon of the day, answered 5 hours after it: the processor recorded it 4 hours after the day.
        await conn.execute(
            "UPDATE payment_attempts SET created = %s, finished = %s WHERE id = %s",
            (start + timedelta(hours=12), end + timedelta(hours=5), late_attempt),
        )
    a.books(
        "UPDATE authorizations SET created = ? WHERE reference = ?",
        int((start + timedelta(hours=12)).timestamp()),
        early_attempt,
    )
    a.books(
        "UPDATE authorizations SET created = ? WHERE reference = ?",
        int((end + timedelta(hours=4)).timestamp()),
        late_attempt,
    )
    result = await a.reconcile(day)
    assert result.report is not None
    assert reconciliation.report_object(result.report) == {
        "processor": a.name, "date": day.isoformat(), "matched": 2,
        "missing_in_tender": [], "missing_at_processor": [], "mismatched": [],
    }  # fmt: skip
