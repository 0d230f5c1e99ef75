"""Velocity limits against card testing (API.md "Security limits"), and the hosted page's look-up limit.

A card tester runs a list of stolen numbers (or one number with guessed CVCs and expiries) through a payment
form and keeps those that are not declined. So declines are what is limited, in a sliding window:
- per card fingerprint within a merchant, on the API and on the hosted page (the fingerprint is keyed by the
  merchant, so one merchant's declines never block a card at another);
- on the hosted page also per checkout session and per shopper's address (per merchant: a shared address, a
  mobile carrier's NAT or an office, then blocks one shop rather than every shop). Never per address on the API:
  a merchant's server sends every shopper's payment from a few addresses.

What counts as a decline: a card payment that failed with one of COUNTED_FAILURES, the issuer's answers that
tell a tester something about the card (declined for any reason, wrong CVC or number, expired, 3-D Secure not
passed). A processor error, a timeout or a cancel says nothing about the card and is not counted, nor is an
alternative method's decline (no card was tested).

Declines are decided by the worker, asynchronously, so they are counted where they are recorded: the failed
payments themselves, by an indexed query (migration 0007). The check runs inside the new payment's transaction
after the request has been validated and before anything is written, so a refused payment (429, `Retry-After`:
the seconds until the decline that holds the limit leaves the window) writes nothing and charges nothing.
Payments whose outcome is still unknown are not counted: a burst faster than the worker can overshoot a limit by
what is in flight (a session by nothing: the page runs one payment of a session at a time).

The shopper's address is personal data: only a keyed hash of it is stored (HMAC under a key derived from the
vault key, with the merchant id, so hashes link neither to an address nor across merchants), with the payment,
and purged once it is out of every window.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from tender.config import Settings
from tender.errors import TooManyDeclines
from tender.store import velocity as store
from tender.store.db import Conn, Database
from tender.vault import Vault

log = logging.getLogger(__name__)

# The failure codes that are the issuer's verdict on a card (processors map theirs to these).
COUNTED_FAILURES = frozenset(
    {"card_declined", "incorrect_cvc", "invalid_cvc", "expired_card", "incorrect_number", "authentication_failed"}
)
_ADDRESS_PURPOSE = "checkout client address"


@dataclass(frozen=True, slots=True)
class Limits:
    """Declines allowed within `window`; 0 turns a limit off."""

    window: timedelta = timedelta(hours=1)
    per_card: int = 10
    per_session: int = 5
    per_address: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            window=timedelta(seconds=settings.velocity_window_seconds),
            per_card=settings.velocity_card_declines,
            per_session=settings.velocity_session_declines,
            per_address=settings.velocity_address_declines,
        )


@dataclass(frozen=True, slots=True)
class Guard:
    """The limits a new card payment is held to: per card always; per session (the payment's checkout session)
    and per address (`address_hash`, see `address_hash`) when it comes from the hosted page."""

    limits: Limits
    address_hash: bytes | None = None

    async def check(
        self, conn: Conn, *, merchant_id: str, fingerprint: str, session_id: str | None, now: datetime
    ) -> None:
        """Raise RateLimited if a limit is reached. Writes nothing."""
        limits, since = self.limits, now - self.limits.window
        if limits.per_card:
            declines = await store.card_declines(
                conn, merchant_id, fingerprint, COUNTED_FAILURES, since, limits.per_card
            )
            refuse_if_full(declines, limits.per_card, limits.window, now, "this card")
        if session_id is not None and limits.per_session:
            declines = await store.session_declines(conn, session_id, COUNTED_FAILURES, since, limits.per_session)
            refuse_if_full(declines, limits.per_session, limits.window, now, "this checkout")
        if self.address_hash is not None and limits.per_address:
            declines = await store.address_declines(
                conn, self.address_hash, COUNTED_FAILURES, since, since - limits.window, limits.per_address
            )
            refuse_if_full(declines, limits.per_address, limits.window, now, "this address")

    async def record(self, conn: Conn, payment_id: str, now: datetime) -> None:
        """Remember where the payment came from (in its transaction), for the address limit."""
        if self.address_hash is not None:
            await store.record_address(conn, payment_id, self.address_hash, now)


def refuse_if_full(declines: list[datetime], limit: int, window: timedelta, now: datetime, what: str) -> None:
    """`declines`: the newest `limit` decline times in the window, newest first. With `limit` of them the next
    payment may go when the oldest of these leaves the window."""
    if len(declines) < limit:
        return
    retry_after = math.ceil((declines[limit - 1] + window - now).total_seconds())
    log.info("velocity limit: %d declines for %s within %s", limit, what, window)
    raise TooManyDeclines(
        f"Too many declined payments for {what} recently; try again in {max(1, retry_after)} seconds.",
        retry_after=retry_after,
    )


def normalize_address(address: str) -> str:
    """The key an address is counted under: an IPv4 address, or an IPv6 address's /64 (anyone with one IPv6
    address has the whole /64 to rotate through). Anything else as given, lower case."""
    try:
        ip = ip_address(address.strip())
    except ValueError:
        return address.strip().lower()
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if isinstance(ip, IPv6Address):
        return str(ip_network(f"{ip}/64", strict=False))
    return str(ip)


def address_hash(vault: Vault, merchant_id: str, address: str) -> bytes:
    return vault.keyed_hash(_ADDRESS_PURPOSE, f"{merchant_id}\x00{normalize_address(address)}")


def client_address(peer: str | None, forwarded_for: list[str], trusted: tuple[IPv4Network | IPv6Network, ...]) -> str:
    """The shopper's address: the connection's peer, unless the peer is a trusted proxy; then the nearest
    address in X-Forwarded-For (read from the right, proxies append) that is not a trusted proxy. Entries left
    of an untrusted one could be anything the client wrote, so they are never read."""
    address = peer or "unknown"
    if not trusted or not _trusted(address, trusted):
        return address
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = hop
        if not _trusted(hop, trusted):
            break
    return address


def _trusted(address: str, trusted: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


async def look_up_on_return(db: Database, payment_id: str, *, interval_seconds: float) -> bool:
    """The shopper is back from 3-D Secure or a provider's page before the outcome reached us: have the
    processor asked now (the notification may be lost), at most once per `interval_seconds` per payment
    whoever reloads the page and whichever API process serves it. True if a look-up was asked for."""
    async with db.transaction() as conn:
        return await store.request_lookup(conn, payment_id, interval_seconds)


async def purge_addresses(db: Database, limits: Limits, *, now: datetime | None = None) -> int:
    """Forget address hashes no window can count any more (their payments stay)."""
    before = (now or datetime.now(UTC)) - 2 * limits.window
    async with db.connection() as conn:
        removed = await store.delete_addresses_before(conn, before)
    if removed:
        log.info("purged %d checkout address hashes", removed)
    return removed
