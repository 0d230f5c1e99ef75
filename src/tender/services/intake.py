"""Accepting payments in batches: a group commit for POST /v1/payments (issue 16).

One by one, a payment took one transaction of seven round trips (key, routing rules, declines, card, payment,
answer, COMMIT), each a statement for PostgreSQL and a turn of psycopg for us: that was most of the API's and
PostgreSQL's CPU per payment. Here the requests that arrive while earlier ones are being written wait and go
together, in one transaction of two round trips whatever their number (store/intake.py). There is no timer: a
batch leaves as soon as the writer is free, so at a low rate a batch is one payment and nothing waits; under load
batches grow, and the round trips, statements and commits per payment shrink with them. One batch is written at a
time, so batches are as large as they can be: in eight alternated pairs of benchmark runs against two at a time, it
gave a lower p99 in all eight, less CPU per payment in seven and more intake in five (bench/README.md). A second
one starts only when the batch being written has taken longer than `stall_seconds` (waiting for a row lock, a slow
commit), so one stuck batch holds up the requests behind it for that long, not up to the lock timeout.

The answers are exactly those of the one-by-one path (services/payments.create_payment under
services/idempotency.run), which stays the reference:
- what needs a look-up first (a saved method, a card to save) never comes here;
- a request whose key is held by another request or was used before, whose route cannot be made, or whose card
  is over its velocity limit is left out of the batch, and taken one by one once the batch has committed: it gets
  its exact answer there (a 409, a replay, a 400, a 429);
- of two requests of one batch with the same key or the same reference, the second goes one by one;
- a database error before the COMMIT (a reference another payment already holds, a lock timeout) rolls the
  batch back whole, and each of its requests goes one by one;
- a lost connection gives each request the error, as one by one (503; the API runs a keyed request once more,
  and it replays if the batch did commit: a connection lost during the COMMIT leaves its outcome unknown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from tender.config import Settings
from tender.domain import routing as routing_rules
from tender.domain.errors import DomainError
from tender.domain.models import Payment
from tender.errors import TenderError
from tender.services import velocity
from tender.services.idempotency import StoredResponse
from tender.services.objects import dumps, payment_object
from tender.services.payments import NewPayment, card_row, payment_record, route_of
from tender.store import intake as store
from tender.store.db import Database, connection_lost
from tender.store.payments import NewCard
from tender.vault import Vault

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Item:
    new: NewPayment
    key: str | None
    request_hash: bytes
    available: Collection[str]  # the processors that are on (its route is made among them)
    answer: asyncio.Future[StoredResponse | None]


@dataclass(slots=True)
class _Batch:
    """What a batch writes, and the answers it gives once committed."""

    cards: list[NewCard]
    payments: list[Payment]
    keyed: list[store.Answer]
    answers: dict[_Item, StoredResponse]


@dataclass(slots=True)
class IntakeCounts:
    """Since the process started: batches committed, the payments they wrote, and the requests sent one by one."""

    batches: int = 0
    payments: int = 0
    largest: int = 0
    one_by_one: int = 0


class PaymentIntake:
    """The API process's batcher. `max_batch` bounds a transaction's size; one batch is written at a time, and a
    spare writer starts a second one while the first has been writing for longer than `stall_seconds`."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        settings: Settings,
        *,
        max_batch: int = 128,
        stall_seconds: float = 0.1,  # far longer than a batch's two round trips and its commit
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.settings = settings
        self.max_batch = max_batch
        self.stall_seconds = stall_seconds
        self._waiting: list[_Item] = []
        self._writing: list[float] = []  # when each batch being written started (loop time); at most two
        self._spare: asyncio.TimerHandle | None = None  # wakes the spare writer if the batch being written stalls
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = IntakeCounts()
        self.on_batch = on_batch  # told the size of each committed batch (the API's metrics)

    async def accept(
        self, new: NewPayment, *, key: str | None, request_hash: bytes, available: Collection[str]
    ) -> StoredResponse | None:
        """The 202 for `new` (stored under `key`, if any), once its batch has committed; None when the request
        must take the one-by-one path, which then gives its exact answer."""
        answer: asyncio.Future[StoredResponse | None] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(_retrieved)
        self._waiting.append(_Item(new, key, request_hash, available, answer))
        self._start()
        # Shielded: a client that goes away must not cancel its payment's place in a batch being written.
        return await asyncio.shield(answer)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting and self._may_write(loop.time()):
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            started = loop.time()
            self._writing.append(started)
            task = loop.create_task(self._flush(batch, started), name="payment-intake")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._waiting and len(self._writing) == 1 and self._spare is None:
            self._spare = loop.call_at(self._writing[0] + self.stall_seconds, self._wake_spare)

    def _may_write(self, now: float) -> bool:
        """None being written, or one that has stalled (and no second one yet)."""
        return not self._writing or (len(self._writing) == 1 and now - self._writing[0] >= self.stall_seconds)

    def _wake_spare(self) -> None:
        self._spare = None
        self._start()

    async def _flush(self, items: list[_Item], started: float) -> None:
        try:
            answers = await self._write(items)
        except Exception as exc:  # a lost connection, no connection in time, a bug: each request gets it (503, 500)
            for item in items:
                if not item.answer.done():
                    item.answer.set_exception(exc)
        except BaseException:  # cancelled (the server stopping)
            for item in items:
                item.answer.cancel()
            raise
        else:
            if answers:
                self.counts.batches += 1
                self.counts.payments += len(answers)
                self.counts.largest = max(self.counts.largest, len(answers))
                if self.on_batch is not None:
                    self.on_batch(len(answers))
            self.counts.one_by_one += len(items) - len(answers)
            for item in items:
                if not item.answer.done():
                    item.answer.set_result(answers.get(item))
        finally:
            self._writing.remove(started)
            if self._spare is not None:  # the batch ended: whatever waits goes now, or when the next one stalls
                self._spare.cancel()
                self._spare = None
            self._start()

    async def _write(self, items: list[_Item]) -> dict[_Item, StoredResponse]:
        batch = _unique(items)
        keys = [store.KeyClaim(i, it.new.merchant_id, it.key) for i, it in enumerate(batch) if it.key]
        limits = velocity.Limits.from_settings(self.settings)
        checks = self._decline_queries(batch, limits)
        now = datetime.now(UTC)
        async with self.db.own_transaction() as conn:  # rolls back whatever is not committed on the way out
            try:
                found = await store.begin_and_read(
                    conn,
                    keys=keys,
                    merchants={it.new.merchant_id for it in batch},
                    declines=list(checks.values()),
                    decline_codes=velocity.COUNTED_FAILURES,
                    since=now - limits.window,
                    limit=limits.per_card,
                )
            except Exception as exc:
                if connection_lost(exc):  # as one by one: the API answers 503 (and runs a keyed request again)
                    raise
                log.info("payment batch of %d not written (%s): one by one", len(batch), type(exc).__name__)
                return {}
            out = self._decide(batch, found, checks, limits)
            if not out.payments:
                return {}
            try:
                await store.write_and_commit(conn, cards=out.cards, payments=out.payments, answers=out.keyed)
            except Exception as exc:
                if connection_lost(exc):
                    raise
                log.info("payment batch of %d rolled back (%s): one by one", len(batch), type(exc).__name__)
                return {}
        return out.answers

    def _decline_queries(
        self, batch: list[_Item], limits: velocity.Limits
    ) -> dict[tuple[str, str], store.DeclineQuery]:
        """One query per card (fingerprint within its merchant) in the batch, if the per-card limit is on."""
        if not limits.per_card:
            return {}
        queries: dict[tuple[str, str], store.DeclineQuery] = {}
        for it in batch:
            if it.new.card is not None:
                fingerprint = self.vault.fingerprint(it.new.card.number, merchant_id=it.new.merchant_id)
                queries.setdefault(
                    (it.new.merchant_id, fingerprint),
                    store.DeclineQuery(len(queries), it.new.merchant_id, fingerprint),
                )
        return queries

    def _decide(
        self,
        batch: list[_Item],
        found: store.Found,
        checks: dict[tuple[str, str], store.DeclineQuery],
        limits: velocity.Limits,
    ) -> _Batch:
        out = _Batch([], [], [], {})
        rules = {m: routing_rules.parse_rules(r) for m, r in found.rules.items()}
        for i, it in enumerate(batch):
            new = it.new
            if it.key is not None:
                claim = found.claims.get(i)
                if claim is None or not claim.free or claim.used:
                    continue  # held by another request (409) or used before (a replay): one by one
            try:
                route = route_of(new, rules.get(new.merchant_id), on=it.available)
                card = None
                if new.card is not None:
                    card, view = card_row(self.vault, new.merchant_id, new.card)
                    check = checks.get((new.merchant_id, card.fingerprint))
                    if check is not None:
                        declines = found.declines.get(check.i, [])
                        velocity.refuse_if_full(declines, limits.per_card, limits.window, new.now, "this card")
                else:
                    assert new.apm_view is not None  # needs_no_lookup: a new card or an alternative method
                    view = new.apm_view
                payment = payment_record(new, route=route, card_id=card.id if card else None, payment_method=view)
                body = dumps(payment_object(payment))
            except (TenderError, DomainError):  # a 400 or a 429: given by the one-by-one path, which raises it again
                continue
            except Exception:  # a bug: never its batch-mates' failure; one by one, it fails alone
                log.exception("payment batch: could not prepare one payment; it goes one by one")
                continue
            answer = StoredResponse(202, body, {"Location": f"/v1/payments/{payment.id}"})
            if card is not None:
                out.cards.append(card)
            out.payments.append(payment)
            if it.key is not None:
                out.keyed.append(
                    store.Answer(
                        new.merchant_id, it.key, it.request_hash, answer.status_code, answer.body, answer.headers
                    )
                )
            out.answers[it] = answer
        return out


def _unique(items: list[_Item]) -> list[_Item]:
    """The items a batch can take: of two with the same key or the same reference (within a merchant), the first."""
    keys: set[tuple[str, str]] = set()
    references: set[tuple[str, str]] = set()
    batch: list[_Item] = []
    for it in items:
        key = (it.new.merchant_id, it.key) if it.key is not None else None
        reference = (it.new.merchant_id, it.new.reference) if it.new.reference is not None else None
        if (key is not None and key in keys) or (reference is not None and reference in references):
            continue
        if key is not None:
            keys.add(key)
        if reference is not None:
            references.add(reference)
        batch.append(it)
    return batch


def _retrieved(answer: asyncio.Future[StoredResponse | None]) -> None:
    """Mark an error as seen: the request may be gone (its client left), and nobody else will read it."""
    if not answer.cancelled():
        answer.exception()
