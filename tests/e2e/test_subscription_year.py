"""End to end over HTTP with the real simulator, API and worker processes: a year of a monthly subscription on a
test clock, in seconds. A 14-day trial; the first period charged at the trial's end (the simulator's
succeed-once card); the next renewal declined, past_due, retried a day later and declined again; a new card
put on the subscription is tried at the next retry (3 days after the due time) and recovers it; then months
of renewals in one advance; cancel at the period's end; the ledger balanced all along."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.processes import Stack, environment, wait_until_healthy
from tests.support.serve import free_port

pytestmark = pytest.mark.e2e

ONCE = "4000000000001117"  # succeeds the first time, declined insufficient_funds afterwards
GOOD = "5555555555554444"


@pytest.fixture(scope="module")
def stack(tender_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("e2e-subscription-logs")
    api_port, sim_port = free_port(), free_port()
    env = environment(tender_env, TENDER_PORT=str(api_port), TENDER_SIMULATOR_URL=f"http://127.0.0.1:{sim_port}")
    s = Stack(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}", env, logs)
    try:
        sim = s.start("simulator", "simulator", "--port", str(sim_port), "--db-path", str(logs / "sim.sqlite3"))
        wait_until_healthy(f"{s.simulator_url}/healthz", [sim])
        api = s.start("api", "api")
        worker = s.start("worker", "worker")
        wait_until_healthy(f"{s.api_url}/readyz", [api, worker])
        yield s
    finally:
        s.stop()
    print(f"e2e logs: {logs}")


def admin(stack: Stack, tender_env: dict[str, str]) -> httpx.Client:
    return httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {tender_env['TENDER_ADMIN_KEY']}"}, timeout=10
    )


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def card(number: str) -> dict[str, Any]:
    return {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "holder_name": "A Year"}}


def test_a_year_of_a_subscription_on_a_test_clock(stack: Stack, tender_env: dict[str, str]) -> None:
    with admin(stack, tender_env) as operator:
        merchant = ok(operator.post("/admin/v1/merchants", json={"name": "Year shop"}), 201)
    headers = {"Authorization": f"Bearer {merchant['secret_key']}"}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=120) as c:
        clock = ok(c.post("/v1/test_clocks", json={"frozen_time": "2026-01-01T10:00:00Z"}), 201)["id"]
        pm = ok(c.post("/v1/payment_methods", json=card(ONCE)), 201)["id"]
        customer = ok(c.post("/v1/customers", json={"email": "y@example.com", "test_clock": clock,
                                                    "payment_method": pm}), 201)["id"]  # fmt: skip
        sub = ok(c.post("/v1/subscriptions", json={"customer": customer, "amount": 4990, "currency": "BRL",
                                                   "interval": "month", "trial_days": 14}), 201)  # fmt: skip
        assert (sub["status"], sub["trial_end"]) == ("trialing", "2026-01-15T10:00:00.000Z")

        def advance(to: str) -> None:
            done = ok(c.post(f"/v1/test_clocks/{clock}/advance", json={"frozen_time": to}))
            assert (done["status"], done["frozen_time"]) == ("ready", to.replace("Z", ".000Z"))

        def get_sub() -> dict[str, Any]:
            return dict(ok(c.get(f"/v1/subscriptions/{sub['id']}")))

        def all_invoices() -> list[dict[str, Any]]:
            return list(reversed(ok(c.get("/v1/invoices", params={"subscription": sub["id"], "limit": 100}))["data"]))

        advance("2026-01-15T10:00:00Z")  # the trial ends: the first period, charged (the card's one success)
        assert get_sub()["status"] == "active"
        assert [(i["status"], i["amount_paid"]) for i in all_invoices()] == [("paid", 4990)]

        advance("2026-02-16T12:00:00Z")  # the renewal on Feb 15 and its first retry on Feb 16: both declined
        feb = all_invoices()[1]
        assert (feb["period_start"], feb["status"], feb["attempt_count"]) == ("2026-02-15T10:00:00.000Z", "open", 2)
        assert feb["next_payment_attempt"] == "2026-02-18T10:00:00.000Z"
        assert get_sub()["status"] == "past_due"
        declined = ok(c.get(f"/v1/payments/{feb['payment']}"))
        assert (declined["status"], declined["decline_code"]) == ("failed", "insufficient_funds")

        new_card = ok(c.post("/v1/payment_methods", json={**card(GOOD), "customer": customer}), 201)["id"]
        ok(c.post(f"/v1/subscriptions/{sub['id']}", json={"payment_method": new_card}))
        advance("2026-02-18T10:00:00Z")  # the next retry, with the new card: recovered
        feb = all_invoices()[1]
        assert (feb["status"], feb["attempt_count"], feb["amount_paid"]) == ("paid", 3, 4990)
        assert get_sub()["status"] == "active"

        started = time.monotonic()
        advance("2026-11-20T00:00:00Z")  # Mar 15 to Nov 15: nine renewals in one advance
        assert time.monotonic() - started < 60
        ok(c.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": True}))
        advance("2027-01-01T00:00:00Z")  # the period ends on Dec 15 and so does the subscription, not renewed

        ended = get_sub()
        assert (ended["status"], ended["ended_at"], ended["cancel_at_period_end"]) == (
            "canceled",
            "2026-12-15T10:00:00.000Z",
            False,
        )
        invoices = all_invoices()
        assert [i["period_start"][:10] for i in invoices] == [f"2026-{m:02d}-15" for m in range(1, 12)]
        assert all(i["status"] == "paid" and i["amount_paid"] == 4990 for i in invoices)
        # Each paid by one successful payment; the February one after two declines.
        for i in invoices:
            payment = ok(c.get(f"/v1/payments/{i['payment']}"))
            assert (payment["status"], payment["amount"]) == ("succeeded", 4990)
        types = [e["type"] for e in ok(c.get("/v1/events", params={"object": sub["id"], "limit": 100}))["data"]]
        assert types[0] == "subscription.canceled" and types[-1] == "subscription.created"
        assert "subscription.past_due" in types
        # Payables are dated in the clock's time: a credit card's 30 days after each charge.
        payables = ok(c.get("/v1/payables", params={"payment": invoices[-1]["payment"]}))["data"]
        assert [p["payment_date"] for p in payables] == ["2026-12-15"]
    with admin(stack, tender_env) as operator:
        assert ok(operator.get("/admin/v1/ledger/verify"))["balanced"] is True
