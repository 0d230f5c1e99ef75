"""The worker's pumps: each a small class over the generic batch pump (worker/pump.py) that says what it claims
and which service handles a row. The services do the work; worker/runner.py runs the pumps in lanes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from aiohttp.abc import AbstractResolver

from tender.domain.retry import RetryPolicy
from tender.domain.transitions import PaymentChange
from tender.processors.base import Processor
from tender.services import billing, checkout, checkout_stripe, settlement
from tender.services.pacing import Pacing
from tender.services.payment_operations import PaymentOperations, PaymentSchedule, PaymentWork
from tender.services.processor_health import ProcessorHealth
from tender.services.refunds import RefundOperations, RefundWork
from tender.services.webhook_delivery import DeliveryOperations, DeliveryPolicy, DeliveryResult, DeliveryWork
from tender.store import refunds as refund_store
from tender.store import webhooks as webhook_store
from tender.store.claims import Claim
from tender.store.db import Conn, Database
from tender.store.payments import PAYMENT_COLUMNS
from tender.vault import Vault
from tender.worker.pump import BatchPump


class PaymentPump(BatchPump[PaymentWork, PaymentChange]):
    """Due payments: every processor operation (authorize, capture, cancel, look-ups), by
    services/payment_operations.py; each status it reaches is written by services/payment_transitions.py.
    After each batch, its calls' outcomes go to the circuit breaker (`health`)."""

    table = "payments"
    columns = PAYMENT_COLUMNS
    kind = "payment"

    def __init__(
        self,
        db: Database,
        vault: Vault,
        processors: Mapping[str, Processor],
        *,
        lease_seconds: float = 60.0,
        retry: RetryPolicy | None = None,
        schedule: PaymentSchedule | None = None,
        business_tz: tzinfo = UTC,
        health: ProcessorHealth | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        super().__init__(db, lease_seconds=lease_seconds)
        self.operations = PaymentOperations(
            vault,
            processors,
            retry=retry,
            schedule=schedule,
            business_tz=business_tz,
            health=health,
            pacing=pacing,
        )

    async def run_batch(self, limit: int) -> int:
        try:
            return await super().run_batch(limit)
        finally:  # after the write (or its failure): the calls happened either way
            await self.operations.report_calls()

    async def prepare(self, conn: Conn, claim: Claim) -> Sequence[PaymentWork]:
        return await self.operations.prepare(conn, claim.rows)

    def key(self, item: PaymentWork) -> str:
        return item.payment.id

    async def handle(self, item: PaymentWork) -> PaymentChange:
        return await self.operations.run(item)

    def on_error(self, item: PaymentWork, error: str) -> PaymentChange:
        return self.operations.failed(item, error)

    async def write(self, conn: Conn, token: uuid.UUID, items: list[PaymentWork], results: list[PaymentChange]) -> None:
        await self.operations.write(conn, token, items, results)


class RefundPump(BatchPump[RefundWork, dict[str, Any]]):
    """Due refunds: each one's processor operation (a refund under its own id, or a look-up of it), by
    services/refunds.py, with the payment pump's guarantees: lease, look-up before any re-send, dead letters."""

    table = "refunds"
    columns = refund_store.CLAIM_COLUMNS
    kind = "refund"

    def __init__(
        self,
        db: Database,
        processors: Mapping[str, object],
        *,
        lease_seconds: float = 60.0,
        retry: RetryPolicy | None = None,
        business_tz: tzinfo = UTC,
        health: ProcessorHealth | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        super().__init__(db, lease_seconds=lease_seconds)
        self.operations = RefundOperations(
            processors, retry=retry, business_tz=business_tz, health=health, pacing=pacing
        )

    async def run_batch(self, limit: int) -> int:
        try:
            return await super().run_batch(limit)
        finally:  # after the write (or its failure): the calls happened either way
            await self.operations.report_calls()

    async def prepare(self, conn: Conn, claim: Claim) -> Sequence[RefundWork]:
        return await self.operations.prepare(conn, claim.rows)

    def key(self, item: RefundWork) -> str:
        return item.id

    async def handle(self, item: RefundWork) -> dict[str, Any]:
        return await self.operations.run(item)

    def on_error(self, item: RefundWork, error: str) -> dict[str, Any]:
        return self.operations.failed(item, error)

    async def write(self, conn: Conn, token: uuid.UUID, items: list[RefundWork], results: list[dict[str, Any]]) -> None:
        await self.operations.write(conn, token, items, results)


class ExpiryPump(BatchPump[str, dict[str, datetime]]):
    """Open checkout sessions past `expires_at`: expired in the claim's own transaction (nothing to call), except
    one whose payment is still in progress, looked at again `recheck_seconds` later (services/checkout.py).
    Sessions hosted by Stripe Checkout are due for look-ups while open: those are asked of Stripe
    (services/checkout_stripe.py; `stripe` given), each then due again while it stays open."""

    table = "checkout_sessions"
    columns = ("status", "payment_id")
    kind = "checkout session"

    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float = 60.0,
        recheck_seconds: float = 60.0,
        stripe: tuple[Vault, checkout_stripe.StripeAccess] | None = None,
        business_tz: tzinfo = UTC,
        pacing: Pacing | None = None,  # the look-ups are calls to Stripe, paced with the other pumps' calls
    ) -> None:
        super().__init__(db, lease_seconds=lease_seconds)
        self._recheck = recheck_seconds
        self._stripe = stripe
        self._tz = business_tz
        self._pacing = pacing or Pacing()

    async def prepare(self, conn: Conn, claim: Claim) -> Sequence[str]:
        hosted = await checkout.expire_due(conn, claim.token, claim.rows, recheck_seconds=self._recheck)
        return hosted if self._stripe is not None else []  # without Stripe: looked at again a lease later

    def key(self, item: str) -> str:
        return item

    async def handle(self, item: str) -> dict[str, datetime]:
        assert self._stripe is not None  # prepare hands out nothing otherwise
        vault, access = self._stripe
        return await self._pacing.call(
            checkout_stripe.PROCESSOR,
            lambda: checkout_stripe.look_up_due(self._db, vault, access, [item], tz=self._tz),
        )

    def on_error(self, item: str, error: str) -> dict[str, datetime]:
        return {item: datetime.now(UTC) + checkout_stripe.LOOK_EVERY}

    async def write(self, conn: Conn, token: uuid.UUID, items: list[str], results: list[dict[str, datetime]]) -> None:
        await checkout_stripe.reschedule(conn, token, {k: v for r in results for k, v in r.items()})


class DeliveryPump(BatchPump[DeliveryWork, DeliveryResult]):
    """Due webhook deliveries: each POSTed to its endpoint, signed (services/webhook_delivery.py). A batch
    writes the answers in hand after the policy's patience and goes on claiming; slow requests are written
    when they end, so one slow endpoint holds up nobody else's events."""

    table = "webhook_deliveries"
    columns = webhook_store.CLAIM_COLUMNS
    kind = "webhook delivery"

    def __init__(
        self,
        db: Database,
        vault: Vault,
        policy: DeliveryPolicy | None = None,
        *,
        resolver: AbstractResolver | None = None,  # DNS; default: the system's
    ) -> None:
        self.operations = DeliveryOperations(vault, policy, resolver=resolver)
        self.policy = self.operations.policy
        super().__init__(db, lease_seconds=self.policy.lease_seconds)
        self.patience_seconds = self.policy.patience_seconds

    @property
    def in_flight(self) -> int:
        return self.operations.in_flight

    def capacity(self, limit: int) -> int:
        return self.operations.capacity(limit)

    async def prepare(self, conn: Conn, claim: Claim) -> Sequence[DeliveryWork]:
        return await self.operations.prepare(conn, claim.token, claim.rows)

    def claimed(self, items: list[DeliveryWork]) -> None:
        self.operations.claimed(items)

    def key(self, item: DeliveryWork) -> str:
        return item.row.id

    async def handle(self, item: DeliveryWork) -> DeliveryResult:
        return await self.operations.run(item)

    def on_error(self, item: DeliveryWork, error: str) -> DeliveryResult:
        return self.operations.failed(item, error)

    async def write(
        self, conn: Conn, token: uuid.UUID, items: list[DeliveryWork], results: list[DeliveryResult]
    ) -> None:
        await self.operations.write(conn, token, items, results)

    async def aclose(self) -> None:
        """Let deliveries still in flight finish and be written (at most the timeout), then close the pool."""
        await super().aclose()
        await self.operations.close()


class SettlementPump:
    """Payables due today (in the business time zone), settled a round of groups at a time by
    services/settlement.py. Not a BatchPump: settlement claims no rows under a lease and has nothing to retry;
    each (merchant, currency, day) group is settled in a transaction of its own under an advisory lock, so
    several workers and `tender settle` can run at once, and a group that fails is simply found due again."""

    def __init__(self, db: Database, *, tz: tzinfo) -> None:
        self._db = db
        self._tz = tz

    async def run_batch(self, limit: int) -> int:
        """One round of at most `limit` groups; returns how many groups it settled (0 when idle)."""
        round_ = await settlement.settle_due(self._db, settlement.business_today(self._tz), max_groups=limit)
        return round_.groups


class RenewalPump(BatchPump[tuple[str, uuid.UUID], str | None]):
    """Due subscriptions on the wall clock: renewals, dunning retries, trial ends and cancels at the period's
    end. The claim only takes the lease; each subscription is then stepped in a short transaction of its own
    by services/billing.py (nothing slow to call: the payments a step makes are the payment pump's), so a
    worker killed mid-batch loses one step, never the batch. Subscriptions on a test clock are never claimed
    here (their `next_run_at` is NULL): their clock's advance runs them."""

    table = "subscriptions"
    kind = "subscription"

    def __init__(self, db: Database, *, setup: billing.BillingSetup, lease_seconds: float = 60.0) -> None:
        super().__init__(db, lease_seconds=lease_seconds)
        self._setup = setup

    async def prepare(self, conn: Conn, claim: Claim) -> Sequence[tuple[str, uuid.UUID]]:
        return [(row["id"], claim.token) for row in claim.rows]

    def key(self, item: tuple[str, uuid.UUID]) -> str:
        return item[0]

    async def handle(self, item: tuple[str, uuid.UUID]) -> str | None:
        await billing.run_leased(self._db, item[0], item[1], setup=self._setup)
        return None

    def on_error(self, item: tuple[str, uuid.UUID], error: str) -> str | None:
        return error

    async def write(
        self, conn: Conn, token: uuid.UUID, items: list[tuple[str, uuid.UUID]], results: list[str | None]
    ) -> None:
        failed = [(item[0], error) for item, error in zip(items, results, strict=True) if error is not None]
        await billing.postpone(conn, token, failed)
