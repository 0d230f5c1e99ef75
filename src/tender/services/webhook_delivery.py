"""Delivering events to webhook endpoints: what the worker's webhook pump does.

Each (event, endpoint) pair is a delivery row, made in the transaction that recorded the event. The pump
(worker/pumps.DeliveryPump, on the generic batch pump of worker/pump.py) claims due deliveries in batches
under a lease, POSTs them concurrently over one shared connection pool (`DeliveryOperations`), and writes
every outcome back in one transaction. A request is signed per Standard Webhooks; its `webhook-id` is the
event id, the same on every retry, so a receiver deduplicates by it.

A 2xx within the timeout is a success; anything else (another status, a timeout, a refused connection, a
blocked address) is retried with exponential backoff and equal jitter (domain/retry.py) until the retry
window (3 days by default) from the event or its redelivery has passed; then the delivery is `failed` and a
dead letter (kind `webhook_delivery`) lets an operator send it again. Delivery is at least once: a receiver
that handled a request but answered too late gets it again. An endpoint failing without a single success for
longer than `disable_after` is disabled, and a `webhook_endpoint.disabled` event says so.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from tender.domain.models import DeadLetterKind, DeliveryStatus, Event, WebhookEndpoint
from tender.domain.retry import DeadLetter, Jitter, RetryPolicy
from tender.domain.webhooks import secret_key, signature_header
from tender.services import dead_letters
from tender.services.events import event_body
from tender.services.objects import endpoint_object
from tender.services.url_guard import BlockedURL, GuardedResolver, check_url
from tender.store import dead_letters as dead_letter_store
from tender.store import events
from tender.store import webhooks as store
from tender.store.db import Conn
from tender.vault import Vault

log = logging.getLogger(__name__)

USER_AGENT = "Tender-Webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024  # read (and drop) at most this much of an answer
MAX_ERROR_LENGTH = 300
CROWDED_DELAY = timedelta(seconds=1)  # a row put back because its endpoint has enough in flight


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    timeout_seconds: float = 10.0
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 6 * 3600.0
    retry_for: timedelta = timedelta(days=3)
    disable_after: timedelta = timedelta(days=5)
    allow_private: bool = False  # TENDER_WEBHOOK_ALLOW_PRIVATE: local development and tests only
    max_connections: int = 200  # also the most requests in flight at once
    per_endpoint: int = 50  # the most requests in flight to one endpoint
    # A batch writes the answers in hand after this long; slower requests are written when they end.
    patience_seconds: float = 1.0
    lease_seconds: float = 60.0

    @property
    def retry(self) -> RetryPolicy:
        """Doubling from `retry_base_seconds` up to `retry_cap_seconds`, half of each wait random, for as long
        as a try falls within `retry_for` of the event (or its redelivery); then failed, a dead letter."""
        return RetryPolicy(
            base_seconds=self.retry_base_seconds,
            cap_seconds=self.retry_cap_seconds,
            jitter=Jitter.EQUAL,
            max_tries=None,
            give_up_after=self.retry_for,
            janitor_seconds=None,  # nothing to look up: a failed delivery waits for an operator
        )


@dataclass(slots=True)
class DeliveryResult:
    """What one delivery's try came to (store/webhooks.DeliveryResult)."""

    id: str
    endpoint_id: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    next_run_at: datetime | None = None
    attempted: datetime | None = None  # None: nothing was sent (the endpoint went away)
    status_code: int | None = None
    latency_ms: int = 0
    error: str | None = None
    gave_up: bool = False  # the retry window has passed: failed, dead letter


@dataclass(slots=True)
class DeliveryWork:
    """One claimed delivery: its row, endpoint and event, and the result its request fills in."""

    row: store.ClaimedDelivery
    endpoint: WebhookEndpoint | None
    event: Event | None
    result: DeliveryResult
    keys: list[bytes] = field(default_factory=list)  # the endpoint's signing keys, read once per batch
    body: bytes = b""


class DeliveryOperations:
    """What the webhook pump does with the deliveries it claims. Owns one HTTP connection pool for every
    delivery it makes, and counts the requests in flight per endpoint: a batch does not wait for its slowest
    request (the pump's patience), and one endpoint never has more than `per_endpoint` requests in flight
    (its extra rows are put back for a moment), so one slow endpoint holds up nobody else's events."""

    def __init__(
        self,
        vault: Vault,
        policy: DeliveryPolicy | None = None,
        *,
        resolver: AbstractResolver | None = None,  # DNS; default: the system's
    ) -> None:
        self._vault = vault
        self.policy = policy or DeliveryPolicy()
        self._retry = self.policy.retry
        self._resolver = resolver
        self._in_flight: Counter[str] = Counter()  # requests in flight per endpoint
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.policy.max_connections,
                keepalive_timeout=30,
                ttl_dns_cache=60,
                # The guard drops private addresses at resolution, so the address dialled is one that was checked.
                resolver=self._resolver if self.policy.allow_private else GuardedResolver(self._resolver),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_seconds),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # never through a proxy from the environment
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool (the pump lets its stragglers finish first)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    def capacity(self, limit: int) -> int:
        """Every request gets a connection: claim no more than the pool has free."""
        return min(limit, self.policy.max_connections - self.in_flight)

    async def prepare(self, conn: Conn, token: uuid.UUID, rows: Sequence[Mapping[str, Any]]) -> list[DeliveryWork]:
        """The claimed deliveries' work, in the claim's transaction; an endpoint's rows beyond its cap are put
        back for a moment (`CROWDED_DELAY`)."""
        keep, crowded = self._within_endpoint_caps([store.ClaimedDelivery(**r) for r in rows])
        await store.postpone(conn, token, [r.id for r in crowded], CROWDED_DELAY)
        found_events = await events.get_many(conn, list({r.event_id for r in keep}))
        endpoints = await store.get_endpoints(conn, list({r.endpoint_id for r in keep}))
        return [
            DeliveryWork(
                row,
                endpoints.get(row.endpoint_id),
                found_events.get(row.event_id),
                DeliveryResult(id=row.id, endpoint_id=row.endpoint_id),
            )
            for row in keep
        ]

    def claimed(self, work: list[DeliveryWork]) -> None:
        """Once the claim has committed: sign and count the requests about to leave (counted before any of
        them runs, so a concurrent lane's claim sees them; each run takes its own off when it ends)."""
        now = datetime.now(UTC)
        keys: dict[str, list[bytes]] = {}
        bodies: dict[str, bytes] = {}
        for w in work:
            if w.endpoint is not None:
                if w.endpoint.id not in keys:
                    keys[w.endpoint.id] = self._signing_keys(w.endpoint, now)
                w.keys = keys[w.endpoint.id]
            if w.event is not None:
                if w.event.id not in bodies:
                    bodies[w.event.id] = event_body(w.event)
                w.body = bodies[w.event.id]
        for w in work:  # only once all are signed: a row counted here is always run, which takes it off
            self._in_flight[w.row.endpoint_id] += 1

    def _within_endpoint_caps(
        self, rows: list[store.ClaimedDelivery]
    ) -> tuple[list[store.ClaimedDelivery], list[store.ClaimedDelivery]]:
        taken: Counter[str] = Counter()
        keep, crowded = [], []
        for row in rows:
            endpoint = row.endpoint_id
            if self._in_flight[endpoint] + taken[endpoint] < self.policy.per_endpoint:
                taken[endpoint] += 1
                keep.append(row)
            else:
                crowded.append(row)
        return keep, crowded

    async def run(self, w: DeliveryWork) -> DeliveryResult:
        """Send the delivery (outside any transaction); a failure is scheduled for a retry, or given up."""
        try:
            return await self._deliver(w)
        finally:
            self._in_flight[w.row.endpoint_id] -= 1
            if self._in_flight[w.row.endpoint_id] <= 0:
                del self._in_flight[w.row.endpoint_id]

    def failed(self, w: DeliveryWork, error: str) -> DeliveryResult:
        """Sending raised (a bug): retried like a failed request, the attempt written down."""
        result = w.result
        result.status_code, result.error = None, error
        result.attempted = result.attempted or datetime.now(UTC)
        self._schedule_retry(result, w.row)
        return result

    async def write(
        self, conn: Conn, token: uuid.UUID, work: list[DeliveryWork], results: list[DeliveryResult]
    ) -> None:
        """The outcomes, where the lease `token` still holds: attempts, endpoint health, dead letters."""
        now = datetime.now(UTC)
        written = await store.write_results(conn, token, results)
        done = [(w, r) for w, r in zip(work, results, strict=True) if r.id in written]
        if len(done) < len(results):
            log.info(
                "%d webhook deliveries changed hands meanwhile; their results were dropped", len(results) - len(done)
            )
        sent = [r for _, r in done if r.attempted is not None]
        await store.insert_attempts(conn, sent)
        await store.note_endpoint_health(
            conn,
            succeeded=[r.endpoint_id for r in sent if r.status is DeliveryStatus.SUCCEEDED],
            failed=[r.endpoint_id for r in sent if r.status is not DeliveryStatus.SUCCEEDED],
            now=now,
        )
        await self._disable_failing(
            conn, [r.endpoint_id for r in sent if r.status is not DeliveryStatus.SUCCEEDED], now
        )
        await dead_letter_store.resolve(
            conn, DeadLetterKind.WEBHOOK_DELIVERY, [r.id for _, r in done if r.status is DeliveryStatus.SUCCEEDED]
        )
        for w, r in done:
            if r.gave_up:
                attempts = w.row.attempts + 1
                history = [
                    {
                        "delivery": r.id,
                        "endpoint": r.endpoint_id,
                        "event": w.row.event_id,
                        "attempts": attempts,
                        "last_status_code": r.status_code,
                        "last_error": r.error,
                    }
                ]
                await dead_letters.open_for(
                    conn,
                    DeadLetterKind.WEBHOOK_DELIVERY,
                    r.id,
                    "deliver",
                    tries=attempts,
                    last_error=r.error,
                    history=history,
                )

    def _signing_keys(self, endpoint: WebhookEndpoint, now: datetime) -> list[bytes]:
        """The current secret's key, and the previous one's while its overlap lasts."""
        keys = [secret_key(self._vault.decrypt(endpoint.secret_ct, row_id=endpoint.id))]
        expires = endpoint.previous_secret_expires
        if endpoint.previous_secret_ct is not None and expires is not None and expires > now:
            keys.append(secret_key(self._vault.decrypt(endpoint.previous_secret_ct, row_id=endpoint.id)))
        return keys

    async def _deliver(self, w: DeliveryWork) -> DeliveryResult:
        result, endpoint = w.result, w.endpoint
        if endpoint is None or not endpoint.enabled:
            result.status, result.error = DeliveryStatus.FAILED, "the endpoint was disabled"
            return result
        if w.event is None:  # cannot happen (an event outlives its deliveries): retried like any bug
            raise KeyError(w.row.event_id)
        await self._send(result, endpoint.url, w.keys, w.row.event_id, w.body)
        if result.status is not DeliveryStatus.SUCCEEDED:
            self._schedule_retry(result, w.row)
        return result

    async def _send(self, result: DeliveryResult, url: str, keys: list[bytes], event_id: str, body: bytes) -> None:
        result.attempted = datetime.now(UTC)
        started = time.perf_counter()
        try:
            target = check_url(url, allow_private=self.policy.allow_private)  # again: settings may have changed
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "webhook-id": event_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature_header(keys, event_id, timestamp, body),
            }
            async with self._client().post(target, data=body, headers=headers, allow_redirects=False) as response:
                result.status_code = response.status
                await response.content.read(MAX_RESPONSE_BYTES)
            if 200 <= response.status < 300:
                result.status = DeliveryStatus.SUCCEEDED
            else:
                result.error = f"HTTP {response.status}"
        except BlockedURL as exc:
            result.error = f"blocked: {exc}"
        except TimeoutError:
            result.error = f"no answer within {self.policy.timeout_seconds:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
        finally:
            result.latency_ms = round((time.perf_counter() - started) * 1000)

    def _schedule_retry(self, result: DeliveryResult, row: store.ClaimedDelivery) -> None:
        then = self._retry.after_failure(row.tries, now=datetime.now(UTC), began=row.retry_from)
        if isinstance(then, DeadLetter):  # the retry window has passed
            result.status, result.next_run_at, result.gave_up = DeliveryStatus.FAILED, None, True
        else:
            result.status, result.next_run_at = DeliveryStatus.PENDING, then.when

    async def _disable_failing(self, conn: Conn, endpoint_ids: list[str], now: datetime) -> None:
        if not endpoint_ids:
            return
        for endpoint in await store.failing_since_before(conn, endpoint_ids, now - self.policy.disable_after):
            since = endpoint.failing_since
            assert since is not None  # selected for failing since before the cut-off
            disabled = await store.update_endpoint(conn, endpoint.id, {"enabled": False, "disabled_reason": "failing"})
            await store.stop_pending(
                conn, endpoint.id, "the endpoint was disabled after failing since " + since.isoformat()
            )
            await events.record(
                conn, [(disabled.merchant_id, "webhook_endpoint.disabled", disabled.id, endpoint_object(disabled))]
            )
            log.warning("webhook endpoint %s disabled: failing since %s", disabled.id, since.isoformat())
