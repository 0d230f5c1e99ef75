"""The worker process: one loop per pump, woken early by LISTEN/NOTIFY, stopped gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from tender.bootstrap import Container
from tender.config import Settings
from tender.domain.retry import RetryPolicy
from tender.services import billing, checkout_stripe, maintenance, reconciliation, velocity
from tender.services.pacing import Pacing
from tender.services.payment_operations import PaymentSchedule
from tender.services.processor_health import ProcessorHealth
from tender.services.webhook_delivery import DeliveryPolicy
from tender.store import notifications
from tender.store.db import unavailable
from tender.worker.pumps import DeliveryPump, ExpiryPump, PaymentPump, RefundPump, RenewalPump, SettlementPump

log = logging.getLogger(__name__)

LISTEN_APPLICATION = "tender-worker-listen"  # how the LISTEN connection shows in pg_stat_activity
_LISTEN_BACKOFF_SECONDS = (0.2, 5.0)  # first and longest pause between attempts to LISTEN again
_LISTEN_PING_SECONDS = 30.0
_BATCH_BACKOFF_CAP_SECONDS = 10.0  # the longest pause of a lane after failed batches


@dataclass(frozen=True, slots=True)
class Pump:
    name: str
    run_batch: Callable[[int], Awaitable[int]]
    batch_size: int
    lanes: int = 2  # batches in flight at once: one waits on the processor while another is claimed
    # The table whose new rows wake this pump early (the `notify_work` trigger's payload); None: it polls.
    # Each pump has its own wake-up, so one pump clearing it never swallows another's news.
    wakes_on: str | None = None


class Worker:
    def __init__(self, container: Container) -> None:
        s = container.settings
        self.container = container
        retry = RetryPolicy(
            base_seconds=s.worker_retry_base_seconds,
            cap_seconds=s.worker_retry_cap_seconds,
            max_tries=s.worker_max_attempts,
            janitor_seconds=s.worker_janitor_seconds,
        )
        schedule = PaymentSchedule(
            action_lookup_seconds=s.worker_action_lookup_seconds,
            action_expiry=timedelta(hours=s.action_expiry_hours),
            capture_window=timedelta(days=s.capture_window_days),
            max_hold=timedelta(seconds=s.routing_max_hold_seconds),
        )
        # The circuit breaker: new authorizations skip a processor that is open or paused (failover); both pumps
        # tell it how their calls went, and share one limit of calls in flight per processor.
        health = ProcessorHealth(container.db, s.circuit_policy)
        pacing = Pacing(s.processor_max_in_flight)
        payment_pump = PaymentPump(
            container.db,
            container.vault,
            container.processors,
            lease_seconds=s.worker_lease_seconds,
            retry=retry,
            schedule=schedule,
            business_tz=s.business_tz,
            health=health,
            pacing=pacing,
        )
        self.pumps = [Pump("payments", payment_pump.run_batch, s.worker_batch_size, wakes_on="payments")]
        # Refunds: the payment pump's guarantees (lease, look-up before re-send, dead letters), its settings.
        refunder = RefundPump(
            container.db,
            container.processors,
            lease_seconds=s.worker_lease_seconds,
            retry=retry,
            business_tz=s.business_tz,
            health=health,
            pacing=pacing,
        )
        self.pumps.append(Pump("refunds", refunder.run_batch, s.worker_batch_size, wakes_on="refunds"))
        # Settlement is not latency-sensitive: one lane, a round of groups per poll when idle.
        settler = SettlementPump(container.db, tz=s.business_tz)
        self.pumps.append(Pump("settlement", settler.run_batch, s.settle_batch_groups, lanes=1))
        # Checkout sessions past expires_at: not latency-sensitive, one lane, polls.
        expirer = ExpiryPump(
            container.db,
            lease_seconds=s.worker_lease_seconds,
            recheck_seconds=s.checkout_expiry_recheck_seconds,
            stripe=(container.vault, checkout_stripe.StripeAccess.of(s)),  # Stripe Checkout sessions' look-ups
            business_tz=s.business_tz,
            pacing=pacing,
        )
        self.pumps.append(Pump("checkout_expiry", expirer.run_batch, s.worker_batch_size, lanes=1))
        # Subscriptions due on the wall clock (renewals, dunning retries): two lanes, polls; their payments wake
        # the payment pump as any new payment does.
        setup = billing.BillingSetup.of(s.business_tz, container.default_processor, container.processors.keys())
        renewer = RenewalPump(container.db, setup=setup, lease_seconds=s.worker_lease_seconds)
        self.pumps.append(Pump("renewals", renewer.run_batch, s.worker_batch_size))
        # Yesterday's reconciliation with each processor, once a day across workers: one lane, a look a minute.
        reconciler = reconciliation.DailyRun(
            container.db,
            container.processors,
            tz=s.business_tz,
            after=timedelta(minutes=s.reconcile_after_minutes),
            stale=timedelta(minutes=s.reconcile_stale_minutes),
            catch_up_days=s.reconcile_catch_up_days,
        )
        self.pumps.append(Pump("reconciliation", reconciler.run_batch, 10, lanes=1))
        self.webhooks = DeliveryPump(container.db, container.vault, webhook_policy(s))
        self.pumps.append(
            Pump("webhooks", self.webhooks.run_batch, s.webhook_batch_size, wakes_on="webhook_deliveries")
        )
        self._wakes = {p.wakes_on: asyncio.Event() for p in self.pumps if p.wakes_on}
        self.processed = 0

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop))
        housekeeping = asyncio.create_task(self._housekeeping(stop))
        lanes = [
            asyncio.create_task(self._lane(pump, stop), name=f"{pump.name}-{i}")
            for pump in self.pumps
            for i in range(pump.lanes)
        ]
        try:
            await asyncio.gather(*lanes)
        finally:
            await self.webhooks.aclose()
            for task in (listener, housekeeping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _lane(self, pump: Pump, stop: asyncio.Event) -> None:
        """Claim batches until stopped. A batch in flight is finished, never abandoned, on stop."""
        poll = self.container.settings.worker_poll_seconds
        failures = 0  # batches failed in a row: the pause before the next grows with them
        while not stop.is_set():
            # Cleared before claiming, never after: a notification that arrives during the batch must wake
            # the next wait, or the rows it announced sit until the next poll.
            wake = self._wakes.get(pump.wakes_on) if pump.wakes_on else None
            if wake is not None:
                wake.clear()
            try:
                handled = await pump.run_batch(pump.batch_size)
                failures = 0
            except Exception as exc:  # nothing kills a lane: the lease protects the rows of a failed batch
                failures += 1
                pause = _backoff(failures, poll)
                if unavailable(exc):  # a database restart or outage: expected, one line, no traceback
                    kind = type(exc).__name__
                    log.warning("pump %s: database unavailable (%s); trying again in %.1f s", pump.name, kind, pause)
                else:
                    log.exception("pump %s failed a batch; trying again in %.1f s", pump.name, pause)
                await _pause(stop, pause)  # a wake-up does not cut it short: the next try would fail the same
                continue
            self.processed += handled
            if handled < pump.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(wake, stop) if wake else stop.wait(), timeout=poll)

    async def _housekeeping(self, stop: asyncio.Event, every_seconds: float = 600.0) -> None:
        while not stop.is_set():
            try:
                # First what keeps work moving and card data bounded: nothing stranded, no CVC kept past its time.
                await maintenance.reschedule_stranded(self.container.db)
                await maintenance.erase_expired_cvcs(
                    self.container.db, hours=self.container.settings.cvc_retention_hours
                )
                s = self.container.settings
                await maintenance.purge_idempotency_keys(self.container.db, hours=s.idempotency_key_hours)
                await maintenance.purge_webhook_attempts(self.container.db, days=s.webhook_attempt_days)
                if s.event_retention_days:
                    await maintenance.purge_events(self.container.db, days=s.event_retention_days)
                limits = velocity.Limits.from_settings(self.container.settings)
                await velocity.purge_addresses(self.container.db, limits)
            except Exception as exc:
                if unavailable(exc):
                    log.warning("housekeeping: database unavailable (%s); trying again later", type(exc).__name__)
                else:
                    log.exception("housekeeping failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_seconds)

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN for due work. A lost connection (a PostgreSQL restart) is made again with back-off while
        the pumps poll; on every (re)connect each pump looks once, for the news nobody heard meanwhile."""
        delay = _LISTEN_BACKOFF_SECONDS[0]
        while not stop.is_set():
            try:
                async with notifications.listening(
                    self.container.listen_url, notifications.WORK, application_name=LISTEN_APPLICATION
                ) as listener:
                    delay = _LISTEN_BACKOFF_SECONDS[0]
                    for event in self._wakes.values():
                        event.set()
                    async for table in listener.payloads(_LISTEN_PING_SECONDS):
                        woken = self._wakes.get(table)
                        for event in [woken] if woken else self._wakes.values():  # unknown news: wake all
                            event.set()
            except Exception as exc:  # never let the listener die: the pumps would only poll from then on
                log.warning("LISTEN connection lost (%s); polling until it is back", type(exc).__name__)
            await _pause(stop, random.uniform(delay / 2, delay))
            delay = min(delay * 2, _LISTEN_BACKOFF_SECONDS[1])


def webhook_policy(s: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(
        timeout_seconds=s.webhook_timeout_seconds,
        retry_base_seconds=s.webhook_retry_base_seconds,
        retry_cap_seconds=s.webhook_retry_cap_seconds,
        retry_for=timedelta(hours=s.webhook_retry_hours),
        disable_after=timedelta(hours=s.webhook_disable_after_hours),
        allow_private=s.webhook_allow_private,
        max_connections=2 * s.webhook_batch_size,  # both lanes' batches in flight never wait for a connection
        lease_seconds=s.worker_lease_seconds,
    )


def _backoff(failures: int, poll: float) -> float:
    """The pause after `failures` failed batches in a row: the poll interval doubling up to a cap, jittered
    so that lanes and workers do not all come back at the same instant."""
    pause = min(max(poll, _BATCH_BACKOFF_CAP_SECONDS), poll * 2 ** min(failures - 1, 16))
    return random.uniform(pause / 2, pause)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if the worker is told to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _first(*events: asyncio.Event) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
