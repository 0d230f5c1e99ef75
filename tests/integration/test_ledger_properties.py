"""Property-based (Hypothesis, stateful): random sequences of captures (full and partial, credit and debit,
four currencies with 0, 2 and 3 decimals), refunds and settlements, through the real services, PostgreSQL
and simulator. After every step the ledger verifies, and the merchant's balances equal both the ledger and
an independent model of the API.md rules (fees with integer half-up rounding, payable dates and statuses).

Hypothesis runs synchronously, so the machine runs in a thread with its own event loop and connection pool,
while the test's loop keeps serving the in-process simulator.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tender.bootstrap import load_vault
from tender.domain.retry import RetryPolicy
from tender.errors import InvalidRequest
from tender.processors.simulator import SimulatorProcessor
from tender.services import ledger, payments, refunds, settlement
from tender.services.merchants import create_merchant
from tender.services.payment_requests import CaptureIn, PaymentCreate
from tender.store import ledger as ledger_store
from tender.store.db import Database
from tender.worker.pumps import PaymentPump, RefundPump

pytestmark = pytest.mark.integration

T = TypeVar("T")
CARDS = {"credit": "4242424242424242", "debit": "4000056655665556"}
# The default plan (API.md): credit 5 %, waiting_funds, +30 days; debit 3 %, paid, same day.
PERCENT = {"credit": 5, "debit": 3}
QUICK = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, lookup_delay_seconds=0.0)


@dataclass
class Harness:
    runner: asyncio.Runner
    db: Database
    authorizer: PaymentPump
    refund_pump: RefundPump
    vault: Any

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)


HARNESS: Harness | None = None


def half_up_fee(amount: int, percent: int) -> int:
    """amount * percent / 100 rounded half up, in integers: the model's own arithmetic, not the code's."""
    return (amount * percent * 2 + 100) // 200


@dataclass
class ModelPayable:
    currency: str
    net: int
    status: str
    payment_date: date


@dataclass
class ModelPayment:
    id: str
    currency: str
    captured: int
    refunded: int
    payable: ModelPayable


class LedgerMachine(RuleBasedStateMachine):
    captured = Bundle("captured")

    def __init__(self) -> None:
        super().__init__()
        assert HARNESS is not None
        self.h = HARNESS
        self.merchant_id = self.h.run(create_merchant(self.h.db, "Stateful shop")).merchant.id
        self.payables: list[ModelPayable] = []
        self.today = datetime.now(UTC).date()

    async def _pump_payments(self, payment_id: str, until: frozenset[str]) -> dict[str, Any]:
        for _ in range(500):
            await self.h.authorizer.run_batch(100)
            p = await payments.get_payment(self.h.db, self.merchant_id, payment_id)
            if p.status in until:
                return {"status": p.status, "amount_captured": p.amount_captured}
            await asyncio.sleep(0.01)
        raise AssertionError(f"{payment_id} never reached {sorted(until)}")

    async def _capture(self, amount: int, currency: str, funding: str, partial: int | None) -> tuple[str, int]:
        body = PaymentCreate(
            amount=amount,
            currency=currency,
            capture=partial is None,
            payment_method={
                "type": "card",
                "card": {"number": CARDS[funding], "exp_month": 12, "exp_year": 2031, "cvc": "123"},
            },
        )
        async with self.h.db.transaction() as conn:
            created = await payments.create_payment(conn, self.h.vault, self.merchant_id, body, processor="simulator")
        state = await self._pump_payments(created.id, frozenset({"succeeded", "requires_capture", "failed"}))
        if partial is not None:
            assert state["status"] == "requires_capture", state
            to_capture = max(1, amount * partial // 100)
            async with self.h.db.transaction() as conn:
                await payments.request_capture(conn, self.merchant_id, created.id, CaptureIn(amount=to_capture))
            state = await self._pump_payments(created.id, frozenset({"succeeded", "failed"}))
        assert state["status"] == "succeeded", state
        return created.id, int(state["amount_captured"])

    @rule(
        target=captured,
        amount=st.integers(1, 5_000_000),
        currency=st.sampled_from(["BRL", "JPY", "BHD", "USD"]),
        funding=st.sampled_from(["credit", "debit"]),
        partial=st.one_of(st.none(), st.integers(1, 100)),
    )
    def capture(self, amount: int, currency: str, funding: str, partial: int | None) -> ModelPayment:
        payment_id, captured = self.h.run(self._capture(amount, currency, funding, partial))
        net = captured - half_up_fee(captured, PERCENT[funding])
        if funding == "debit":
            payable = ModelPayable(currency, net, "paid", self.today)
        else:
            payable = ModelPayable(currency, net, "waiting_funds", self.today + timedelta(days=30))
        self.payables.append(payable)
        return ModelPayment(payment_id, currency, captured, 0, payable)

    async def _refund(self, payment_id: str, amount: int) -> str:
        async with self.h.db.transaction() as conn:
            created = await refunds.create_refund(
                conn, self.merchant_id, refunds.RefundCreate(payment=payment_id, amount=amount)
            )
        for _ in range(200):
            await self.h.refund_pump.run_batch(100)
            got = await refunds.get_refund(self.h.db, self.merchant_id, created.id)
            if got.status != "pending":
                return str(got.status)
            await asyncio.sleep(0.01)
        raise AssertionError(f"refund {created.id} never finished")

    @rule(payment=captured, share=st.integers(1, 100), too_much=st.booleans())
    def refund(self, payment: ModelPayment, share: int, too_much: bool) -> None:
        left = payment.captured - payment.refunded
        if too_much or left == 0:
            with pytest.raises(InvalidRequest) as refused:
                self.h.run(self._refund(payment.id, left + 1))
            assert refused.value.param in ("amount", "payment")
            return
        amount = max(1, left * share // 100)
        assert self.h.run(self._refund(payment.id, amount)) == "succeeded"
        payment.refunded += amount
        if payment.payable.status == "waiting_funds":
            self.payables.append(ModelPayable(payment.currency, -amount, "waiting_funds", payment.payable.payment_date))
        else:
            self.payables.append(ModelPayable(payment.currency, -amount, "paid", self.today))

    @rule(days=st.integers(0, 45))
    def settle(self, days: int) -> None:
        as_of = self.today + timedelta(days=days)
        self.h.run(settlement.settle_all(self.h.db, as_of, max_groups=7))
        for p in self.payables:
            if p.status == "waiting_funds" and p.payment_date <= as_of:
                p.status = "paid"

    @invariant()
    def the_books_agree(self) -> None:
        report = self.h.run(ledger.verify(self.h.db))
        assert report.balanced, report
        expected: dict[tuple[str, str], int] = defaultdict(int)
        for p in self.payables:
            expected[("merchant_pending" if p.status == "waiting_funds" else "merchant_available", p.currency)] += p.net

        async def read() -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
            async with self.h.db.connection() as conn:
                balances = await ledger_store.merchant_balances(conn, self.merchant_id)
                cur = await conn.execute(
                    "SELECT status, currency, sum(net) AS net FROM payables WHERE merchant_id = %s"
                    " GROUP BY status, currency",
                    (self.merchant_id,),
                )
                sums = await cur.fetchall()
            ledger_view = {(b.kind, b.currency): b.amount for b in balances if b.amount}
            payable_view = {
                ("merchant_pending" if r["status"] == "waiting_funds" else "merchant_available", r["currency"]): int(
                    r["net"]
                )
                for r in sums
                if r["net"]
            }
            return ledger_view, payable_view

        ledger_view, payable_view = self.h.run(read())
        model_view = {k: v for k, v in expected.items() if v}
        assert ledger_view == model_view
        assert payable_view == model_view


def run_machine(database_url: str, simulator_url: str, app_settings: Any) -> None:
    global HARNESS
    with asyncio.Runner() as runner:
        db = Database(database_url, min_size=1, max_size=4)
        runner.run(db.open())
        processors = {"simulator": SimulatorProcessor(simulator_url)}
        HARNESS = Harness(
            runner,
            db,
            PaymentPump(db, load_vault(app_settings), processors, lease_seconds=30, retry=QUICK),
            RefundPump(db, processors, lease_seconds=30, retry=QUICK),
            load_vault(app_settings),
        )
        try:
            run_state_machine_as_test(
                LedgerMachine,
                settings=hypothesis_settings(
                    max_examples=12,
                    stateful_step_count=12,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
        finally:
            HARNESS = None
            runner.run(processors["simulator"].aclose())
            runner.run(db.close())


async def test_ledger_invariants_hold_after_every_step(container: Any, simulator_url: str, settings: Any) -> None:
    # `container` first: the schema is migrated and the shared database open before the machine starts.
    await asyncio.to_thread(run_machine, container.db.url, simulator_url, settings)
