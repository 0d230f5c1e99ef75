"""Live payment status: one LISTEN connection per API process, fanned out in memory to waiting requests.

The database announces every change of `payments.status` with `pg_notify('payment_status', <payment id>)`
(a trigger, migration 0002). `PaymentStatusHub` holds the one connection that LISTENs on that channel and
wakes the requests waiting on that payment id, so a thousand clients holding `Prefer: wait` or an SSE
stream cost one connection and no polling.

A notification only says "look again": waiters always re-read the payment, so the truth comes from the
database. Hence the rules that keep a lost notification a matter of latency, never of truth:
- subscribe BEFORE reading the payment, so a change between the read and the wait still wakes the waiter;
- every time the LISTEN connection is (re)established, every current waiter is woken once to re-read
  (whatever changed while nobody listened is seen then);
- waiters re-read at least every `recheck_seconds` anyway, in case a notification went missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import psycopg

from tender.domain.models import Payment
from tender.domain.payments import PaymentStatus
from tender.services import payments
from tender.store.db import Database
from tender.store.notifications import PAYMENT_STATUS, listening

log = logging.getLogger(__name__)

APPLICATION_NAME = "tender-live-status"  # how the LISTEN connection shows in pg_stat_activity
_STABLE_SECONDS = 5.0  # a LISTEN connection that lived this long was not a failed reconnect


class Subscription:
    """One waiter's interest in one payment. Wakes are latched: a change announced while the holder is
    busy re-reading makes the next `wait` return at once."""

    __slots__ = ("_event", "payment_id")

    def __init__(self, payment_id: str) -> None:
        self.payment_id = payment_id
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """True when the payment may have changed since the last wait (its status was announced, or the
        hub reconnected); False after `seconds` without news. Either way, re-read the payment."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(max(seconds, 0.0)):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event.clear()
        return True


class _Subscribe(AbstractAsyncContextManager[Subscription]):
    """Registers on enter, unregisters on exit; neither awaits anything, so a cancelled request (a client
    that hung up) always leaves the hub clean."""

    def __init__(self, hub: PaymentStatusHub, payment_id: str) -> None:
        self._hub = hub
        self._sub = Subscription(payment_id)

    async def __aenter__(self) -> Subscription:
        self._hub._add(self._sub)
        return self._sub

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._hub._remove(self._sub)


class PaymentStatusHub:
    """The API process's single listener on `payment_status`.

    `start()` in the app's lifespan (it returns once LISTEN is in place, or after `start_timeout` if the
    database is unreachable; it keeps trying in the background), `stop()` at shutdown. A hub used without
    `start()` (an app served without its lifespan) starts itself on first `subscribe`; after `stop()` it
    does not, and its waiters fall back to the periodic re-check.
    """

    def __init__(
        self,
        url: str,
        *,
        recheck_seconds: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        ping_seconds: float = 30.0,
    ) -> None:
        self._url = url
        self.recheck_seconds = recheck_seconds
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._ping_seconds = ping_seconds
        self._subs: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._listening = asyncio.Event()
        self.connections = 0  # LISTEN connections established so far (a reconnect makes it 2, ...)
        self.notifications = 0  # notifications received
        self.backend_pid: int | None = None  # the LISTEN connection's server process, while connected

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self, *, start_timeout: float = 10.0) -> None:
        self._stopped = False
        self._ensure_running()
        try:
            async with asyncio.timeout(start_timeout):
                await self._listening.wait()
        except TimeoutError:
            log.warning("payment status hub: not listening yet; waiters re-check every %ss", self.recheck_seconds)

    async def stop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._listening.clear()
        self._wake_all()  # nobody listens any more: let every waiter look once more and then re-check

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def waiting(self, payment_id: str | None = None) -> int:
        """How many subscriptions are open (on one payment, or in all)."""
        if payment_id is not None:
            return len(self._subs.get(payment_id, ()))
        return sum(len(s) for s in self._subs.values())

    # -- waiting ---------------------------------------------------------------------------------------

    def subscribe(self, payment_id: str) -> AbstractAsyncContextManager[Subscription]:
        """`async with hub.subscribe(id) as sub:` then read the payment, then `await sub.wait(...)`."""
        return _Subscribe(self, payment_id)

    def _add(self, sub: Subscription) -> None:
        self._ensure_running()
        self._subs.setdefault(sub.payment_id, set()).add(sub)

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.payment_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.payment_id]

    def _wake_all(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.wake()

    def _dispatch(self, payment_id: str) -> None:
        self.notifications += 1
        for sub in self._subs.get(payment_id, ()):
            sub.wake()

    # -- the listener ----------------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None and not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="payment-status-hub")

    async def _run(self) -> None:
        delay = self._backoff_initial
        while True:
            connected_at: float | None = None
            try:
                async with listening(self._url, PAYMENT_STATUS, application_name=APPLICATION_NAME) as listener:
                    self.backend_pid = listener.backend_pid
                    connected_at = asyncio.get_running_loop().time()
                    self.connections += 1
                    self._listening.set()
                    if self.connections > 1:
                        log.info("payment status hub: listening again")
                    # Whatever changed while nobody listened (or before the first LISTEN) is re-read now.
                    self._wake_all()
                    async for payment_id in listener.payloads(self._ping_seconds):
                        self._dispatch(payment_id)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("payment status hub: LISTEN connection lost (%s); reconnecting", type(exc).__name__)
            except Exception:  # never let a surprise end the listener: waiters would fall back to re-checks
                log.exception("payment status hub: listener failed; reconnecting")
            finally:
                self._listening.clear()
                self.backend_pid = None
            # A connection that lived a while resets the back-off; one that dies at once lets it grow.
            if connected_at is not None and asyncio.get_running_loop().time() - connected_at >= _STABLE_SECONDS:
                delay = self._backoff_initial
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self._backoff_max)


async def payment_when_decided(
    db: Database, hub: PaymentStatusHub, merchant_id: str, payment_id: str, seconds: float
) -> Payment:
    """The payment as soon as it is no longer `processing`, or as it is after `seconds` (`Prefer: wait`).

    Holds no database connection while it waits; raises NotFound (before waiting) for an unknown payment.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with hub.subscribe(payment_id) as sub:  # before the read: a change right after it still wakes us
        payment = await payments.get_payment(db, merchant_id, payment_id)
        while payment.status == PaymentStatus.PROCESSING:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await sub.wait(min(remaining, hub.recheck_seconds))
            payment = await payments.get_payment(db, merchant_id, payment_id)
        return payment
