"""One batch pump for every kind of due work: claim, hold the lease, run concurrently, write back under it.

Each kind of work (payments, refunds, webhook deliveries, checkout sessions to expire: worker/pumps.py) is a
small subclass that says what to claim and how to handle one row; this class does the rest, the same way
for all. A batch is three short steps around the slow part:
1. claim due rows under a lease (store/claims.py) and `prepare` their work, in one transaction: whatever
   must be on record before a call leaves (an attempt, `maybe_sent`) commits with the claim;
2. `handle` the rows concurrently, outside any transaction, while the lease is renewed (`held`): a slow
   batch keeps its rows, and a dead worker's rows fall due one lease later for another worker to take over;
3. `write` every result back in one transaction, only where the lease token is still this batch's: a row
   taken over meanwhile is never written twice.
A row whose handler raises (a bug) does not sink its batch: `on_error` makes it a retry under the kind's
retry policy (domain/retry.py), its error kept on the row. Retries past the policy's tries become dead letters.

A pump with `patience_seconds` does not wait for its slowest rows: after that long it writes the results in
hand and goes on claiming, while the others finish in the background (their lease renewed) and are written
when they end; `aclose` lets them finish. (Webhook deliveries: one slow endpoint holds up no one else.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar, Generic, TypeVar

from tender.store import claims
from tender.store.claims import Claim
from tender.store.db import Conn, Database

log = logging.getLogger(__name__)

W = TypeVar("W")  # one claimed row's work
R = TypeVar("R")  # its result, as `write` takes it


class BatchPump(ABC, Generic[W, R]):
    table: ClassVar[str]  # the table of due rows (`next_run_at`, `lease_token`, `tries`)
    columns: ClassVar[Sequence[str]] = ()  # what the claim returns besides `id` and `tries`
    kind: ClassVar[str]  # what one row is, in log lines
    patience_seconds: float | None = None  # None: a batch waits for all its rows

    def __init__(self, db: Database, *, lease_seconds: float) -> None:
        self._db = db
        self.lease_seconds = lease_seconds
        self._stragglers: set[asyncio.Task[None]] = set()

    # -- what a kind of work says -----------------------------------------------------------------------

    def capacity(self, limit: int) -> int:
        """How many rows to claim now, at most `limit` (a pump with a bounded pool may take fewer)."""
        return limit

    @abstractmethod
    async def prepare(self, conn: Conn, claim: Claim) -> Sequence[W]:
        """The work of the claimed rows, in the claim's transaction; what is left out is not handled (a pump
        may finish or postpone rows here, under `claim.token`)."""

    def claimed(self, items: list[W]) -> None:
        """Called once the claim has committed, just before its rows are handled (every one of them will be)."""

    @abstractmethod
    def key(self, item: W) -> str:
        """The claimed row's id."""

    async def handle(self, item: W) -> R:
        """One row's work, outside any transaction (a processor call, an HTTP request)."""
        raise NotImplementedError(f"{type(self).__name__} handles its rows in prepare")

    def on_error(self, item: W, error: str) -> R:
        """The result of a row whose handler raised: a retry under the retry policy, `error` kept on the row."""
        raise NotImplementedError(f"{type(self).__name__} handles its rows in prepare")

    async def write(self, conn: Conn, token: uuid.UUID, items: list[W], results: list[R]) -> None:
        """Write the results back in one transaction, where the lease `token` still holds."""
        raise NotImplementedError(f"{type(self).__name__} handles its rows in prepare")

    # -- the batch ----------------------------------------------------------------------------------------

    async def run_batch(self, limit: int) -> int:
        """Claim and run up to `limit` due rows; returns how many were claimed."""
        limit = self.capacity(limit)
        if limit <= 0:
            return 0
        async with self._db.transaction() as conn:
            claim = await claims.claim_due(
                conn, self.table, columns=self.columns, limit=limit, lease_seconds=self.lease_seconds
            )
            if not claim.rows:
                return 0
            work = list(await self.prepare(conn, claim))
        if work:
            self.claimed(work)
        if work and self.patience_seconds is None:
            async with held(self._db, self.table, claim.token, [self.key(w) for w in work], self.lease_seconds):
                results = await asyncio.gather(*(self._handle_safely(w) for w in work))
            await self._write(claim.token, work, results)
        elif work:
            await self._run_patiently(claim.token, work, self.patience_seconds or 0.0)
        return len(claim.rows)

    async def aclose(self) -> None:
        """Let rows still in flight finish and be written."""
        if self._stragglers:
            await asyncio.gather(*self._stragglers, return_exceptions=True)

    async def _handle_safely(self, item: W) -> R:
        """One row's bug must not sink its batch: it is retried later and its error kept visible."""
        try:
            return await self.handle(item)
        except Exception as exc:
            log.exception("%s %s failed unexpectedly", self.kind, self.key(item))
            return self.on_error(item, f"internal error: {type(exc).__name__}")

    async def _write(self, token: uuid.UUID, items: list[W], results: list[R]) -> None:
        if items:
            async with self._db.transaction() as conn:
                await self.write(conn, token, items, results)

    async def _run_patiently(self, token: uuid.UUID, work: list[W], patience: float) -> None:
        tasks = {asyncio.create_task(self._handle_safely(w)): w for w in work}
        done, pending = await asyncio.wait(tasks, timeout=patience)
        if pending:  # handed over before writing, so a failed write cannot orphan rows still in flight
            late = {t: tasks[t] for t in pending}
            straggler = asyncio.create_task(self._finish_late(token, late), name=f"{self.table}-stragglers")
            self._stragglers.add(straggler)
            straggler.add_done_callback(self._stragglers.discard)
        finished = [(tasks[t], t.result()) for t in done]
        await self._write(token, [w for w, _ in finished], [r for _, r in finished])

    async def _finish_late(self, token: uuid.UUID, late: dict[asyncio.Task[R], W]) -> None:
        try:
            async with held(self._db, self.table, token, [self.key(w) for w in late.values()], self.lease_seconds):
                await asyncio.wait(late)
            await self._write(token, list(late.values()), [t.result() for t in late])
        except Exception:  # the lease runs out and the rows are run again: at least once, never lost
            log.exception("could not write the results of %d slow %s rows", len(late), self.table)


@contextlib.asynccontextmanager
async def held(
    db: Database, table: str, token: uuid.UUID, ids: Sequence[str], lease_seconds: float
) -> AsyncIterator[None]:
    """Renew the lease on `ids` every third of it while the block runs (the slow part of a batch).

    A worker that dies stops renewing, and its rows fall due one lease later; one that is merely slow
    (a saturated processor, many timeouts in a batch) keeps them, and its results are not thrown away.
    """

    done = asyncio.Event()

    async def renew_until_done() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), lease_seconds / 3)
                return
            try:
                async with db.transaction() as conn:
                    await claims.renew(conn, table, token, ids, lease_seconds)
            except Exception as exc:  # the batch goes on; if the lease lapses, its results are dropped
                log.warning("could not renew a lease on %s: %s", table, type(exc).__name__)

    # Stopped by an event, not cancelled: a renewal in flight finishes its transaction cleanly.
    task = asyncio.create_task(renew_until_done(), name=f"renew-{table}-lease")
    try:
        yield
    finally:
        done.set()
        await task
