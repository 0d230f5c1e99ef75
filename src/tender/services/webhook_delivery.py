"""Delivering events to webhook endpoints: what the worker's webhook pump does.

Each (event, endpoint) pair is a delivery row, made in the transaction that recorded the event. The pump
claims due deliveries in batches under a lease (worker/claim.py), POSTs them concurrently over one shared
connection pool, and writes every outcome back in one transaction. A request is signed per Standard
Webhooks; its `webhook-id` is the event id, the same on every retry, so a receiver deduplicates by it.

A 2xx within the timeout is a success; anything else (another status, a timeout, a refused connection, a
blocked address) is retried with exponential backoff and jitter until the retry window (3 days by default)
from the event or its redelivery has passed; then the delivery is `failed` and a dead letter (kind
`webhook_delivery`) lets an operator send it again. Delivery is at least once: a receiver that handled a
request but answered too late gets it again. An endpoint failing without a single success for longer than
`disable_after` is disabled, and a `webhook_endpoint.disabled` event says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from tender.domain.ids import DEAD_LETTER, new_id
from tender.domain.models import DeadLetterKind, DeliveryStatus, WebhookEndpoint
from tender.domain.webhooks import retry_delay_seconds, secret_key, signature_header
from tender.services.events import event_body
from tender.services.objects import endpoint_object
from tender.services.url_guard import BlockedURL, GuardedResolver, check_url
from tender.store import dead_letters, events
from tender.store import webhooks as store
from tender.store.db import Database
from tender.vault import Vault
from tender.worker.claim import Claim, claim_due, held

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


@dataclass(slots=True)
class _Result:
    id: str
    endpoint_id: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    next_run_at: datetime | None = None
    attempted: datetime | None = None  # None: nothing was sent (the endpoint went away)
    status_code: int | None = None
    latency_ms: int = 0
    error: str | None = None
    gave_up: bool = False  # the retry window has passed: failed, dead letter


class DeliveryPump:
    """The webhook pump's service. Owns one HTTP connection pool for every delivery it makes."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        policy: DeliveryPolicy | None = None,
        *,
        resolver: AbstractResolver | None = None,  # DNS; default: the system's
    ) -> None:
        self._db = db
        self._vault = vault
        self.policy = policy or DeliveryPolicy()
        self._resolver = resolver
        self._in_flight: Counter[str] = Counter()  # requests in flight per endpoint
        self._stragglers: set[asyncio.Task[None]] = set()
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

    async def aclose(self) -> None:
        """Let deliveries still in flight finish and be written (at most the timeout), then close the pool."""
        if self._stragglers:
            await asyncio.gather(*self._stragglers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    async def run_batch(self, limit: int) -> int:
        """Claim and send up to `limit` due deliveries; returns how many were claimed.

        A batch does not wait for its slowest request: after `patience_seconds` the answers in hand are
        written and the lane goes on claiming, while the slow requests finish in the background (their lease
        renewed) and are written when they end. So one slow endpoint holds up nobody else's events; and one
        endpoint never has more than `per_endpoint` requests in flight: its extra rows are put back for a moment.
        """
        limit = min(limit, self.policy.max_connections - self.in_flight)  # every request gets a connection
        if limit <= 0:
            return 0
        async with self._db.transaction() as conn:
            claim = await claim_due(
                conn,
                "webhook_deliveries",
                columns=store.CLAIM_COLUMNS,
                limit=limit,
                lease_seconds=self.policy.lease_seconds,
            )
            if not claim.rows:
                return 0
            rows, crowded = self._within_endpoint_caps(claim.rows)
            await store.postpone(conn, claim.token, [r["id"] for r in crowded], CROWDED_DELAY)
            found_events = await events.get_many(conn, list({r["event_id"] for r in rows}))
            endpoints = await store.get_endpoints(conn, list({r["endpoint_id"] for r in rows}))

        now = datetime.now(UTC)
        keys = {e.id: self._signing_keys(e, now) for e in endpoints.values()}
        bodies = {event_id: event_body(event) for event_id, event in found_events.items()}
        for row in rows:  # counted before any task runs, so a concurrent lane's claim sees them
            self._in_flight[row["endpoint_id"]] += 1
        tasks = {
            asyncio.create_task(self._deliver_counted(row, endpoints.get(row["endpoint_id"]), keys, bodies)): row
            for row in rows
        }
        done, pending = await asyncio.wait(tasks, timeout=self.policy.patience_seconds) if tasks else (set(), set())
        if pending:  # handed over before writing, so a failed write cannot orphan requests still in flight
            late = Claim(claim.token, [tasks[t] for t in pending])
            straggler = asyncio.create_task(self._finish_late(late, pending), name="webhook-stragglers")
            self._stragglers.add(straggler)
            straggler.add_done_callback(self._stragglers.discard)
        await self._write_back(claim.token, [t.result() for t in done], rows)
        return len(claim.rows)

    def _within_endpoint_caps(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        taken: Counter[str] = Counter()
        keep, crowded = [], []
        for row in rows:
            endpoint = row["endpoint_id"]
            if self._in_flight[endpoint] + taken[endpoint] < self.policy.per_endpoint:
                taken[endpoint] += 1
                keep.append(row)
            else:
                crowded.append(row)
        return keep, crowded

    async def _deliver_counted(
        self,
        row: Mapping[str, Any],
        endpoint: WebhookEndpoint | None,
        keys: Mapping[str, list[bytes]],
        bodies: Mapping[str, bytes],
    ) -> _Result:
        try:
            return await self._deliver_safely(row, endpoint, keys, bodies)
        finally:
            self._in_flight[row["endpoint_id"]] -= 1
            if self._in_flight[row["endpoint_id"]] <= 0:
                del self._in_flight[row["endpoint_id"]]

    async def _finish_late(self, late: Claim, pending: set[asyncio.Task[_Result]]) -> None:
        try:
            async with held(self._db, "webhook_deliveries", late, self.policy.lease_seconds):
                await asyncio.wait(pending)
            await self._write_back(late.token, [t.result() for t in pending], late.rows)
        except Exception:  # the lease runs out and the rows are sent again: at least once, never lost
            log.exception("could not write the results of %d slow webhook deliveries", len(pending))

    async def _write_back(self, token: Any, results: list[_Result], rows: list[dict[str, Any]]) -> None:
        if not results:
            return
        now = datetime.now(UTC)
        async with self._db.transaction() as conn:
            written = await store.write_results(conn, token, results)
            done = [r for r in results if r.id in written]
            if len(done) < len(results):
                log.info(
                    "%d webhook deliveries changed hands meanwhile; their results were dropped",
                    len(results) - len(done),
                )
            await store.insert_attempts(conn, [r for r in done if r.attempted is not None])
            sent = [r for r in done if r.attempted is not None]
            await store.note_endpoint_health(
                conn,
                succeeded=[r.endpoint_id for r in sent if r.status is DeliveryStatus.SUCCEEDED],
                failed=[r.endpoint_id for r in sent if r.status is not DeliveryStatus.SUCCEEDED],
                now=now,
            )
            await self._disable_failing(
                conn, [r.endpoint_id for r in sent if r.status is not DeliveryStatus.SUCCEEDED], now
            )
            await dead_letters.resolve(
                conn, DeadLetterKind.WEBHOOK_DELIVERY, [r.id for r in done if r.status is DeliveryStatus.SUCCEEDED]
            )
            for r in done:
                if r.gave_up:
                    await self._open_dead_letter(conn, r, rows)

    def _signing_keys(self, endpoint: WebhookEndpoint, now: datetime) -> list[bytes]:
        """The current secret's key, and the previous one's while its overlap lasts."""
        keys = [secret_key(self._vault.decrypt(endpoint.secret_ct, row_id=endpoint.id))]
        expires = endpoint.previous_secret_expires
        if endpoint.previous_secret_ct is not None and expires is not None and expires > now:
            keys.append(secret_key(self._vault.decrypt(endpoint.previous_secret_ct, row_id=endpoint.id)))
        return keys

    async def _deliver_safely(
        self,
        row: Mapping[str, Any],
        endpoint: WebhookEndpoint | None,
        keys: Mapping[str, list[bytes]],
        bodies: Mapping[str, bytes],
    ) -> _Result:
        result = _Result(id=row["id"], endpoint_id=row["endpoint_id"])
        if endpoint is None or not endpoint.enabled:
            result.status, result.error = DeliveryStatus.FAILED, "the endpoint was disabled"
            return result
        try:
            await self._send(result, endpoint.url, keys[endpoint.id], row["event_id"], bodies[row["event_id"]])
        except Exception as exc:  # one delivery's bug must not sink the batch: it is retried like a failure
            log.exception("webhook delivery %s failed unexpectedly", row["id"])
            result.status_code, result.error = None, f"internal error: {type(exc).__name__}"
            result.attempted = result.attempted or datetime.now(UTC)
        if result.status is not DeliveryStatus.SUCCEEDED:
            self._schedule_retry(result, row)
        return result

    async def _send(self, result: _Result, url: str, keys: list[bytes], event_id: str, body: bytes) -> None:
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

    def _schedule_retry(self, result: _Result, row: Mapping[str, Any]) -> None:
        p = self.policy
        delay = timedelta(
            seconds=retry_delay_seconds(int(row["tries"]), base=p.retry_base_seconds, cap=p.retry_cap_seconds)
        )
        when = datetime.now(UTC) + delay
        if when > row["retry_from"] + p.retry_for:
            result.status, result.next_run_at, result.gave_up = DeliveryStatus.FAILED, None, True
        else:
            result.status, result.next_run_at = DeliveryStatus.PENDING, when

    async def _disable_failing(self, conn: Any, endpoint_ids: list[str], now: datetime) -> None:
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

    async def _open_dead_letter(self, conn: Any, r: _Result, claimed: list[dict[str, Any]]) -> None:
        row = next(c for c in claimed if c["id"] == r.id)
        await dead_letters.open_one(
            conn,
            id=new_id(DEAD_LETTER),
            kind=DeadLetterKind.WEBHOOK_DELIVERY,
            object_id=r.id,
            operation="deliver",
            tries=int(row["attempts"]) + 1,
            last_error=r.error,
            history=[
                {
                    "delivery": r.id,
                    "endpoint": r.endpoint_id,
                    "event": row["event_id"],
                    "attempts": int(row["attempts"]) + 1,
                    "last_status_code": r.status_code,
                    "last_error": r.error,
                }
            ],
        )
        log.warning("webhook delivery %s gave up after %s attempts: %s", r.id, int(row["attempts"]) + 1, r.error)
