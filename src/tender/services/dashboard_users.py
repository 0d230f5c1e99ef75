"""The dashboard's people: users (per merchant, Argon2id password hashes), sign-in for them and for operators
(the admin key), server-side sessions with an idle timeout, and the sign-in rate limit.

A cookie holds a random token; the database holds only its SHA-256, so a copy of the table signs nobody in.
Sign-in answers the same, in about the same time, whether the email exists or not (an unknown email is
checked against a dummy hash), so the form cannot tell which emails have users. Failures are counted per
email and per address over a window; past the limit the form answers 429 before any password is checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import SecretStr

from tender.config import Settings
from tender.domain.ids import MAX_ID_LENGTH, new_id
from tender.errors import InvalidRequest, NotFound
from tender.store import dashboard_users as store
from tender.store.dashboard_users import DashboardSession, DashboardUser
from tender.store.db import Conn, Database
from tender.vault import Vault

log = logging.getLogger(__name__)

USER_PREFIX = "usr"
MAX_EMAIL_LENGTH = 254
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200  # Argon2 takes any length, but nobody needs more, and a huge one is work for nothing
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_OPERATOR_EMAIL = "(operator)"  # what an admin-key failure is counted under
_PURPOSE = "dashboard-signin"

# argon2-cffi's defaults (Argon2id, RFC 9106's second recommended profile, 64 MiB, 3 passes).
_hasher = PasswordHasher()
# Verified when the email has no user, so that answer takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Limits:
    """The sign-in rate limit and the sessions' lifetimes (from Settings)."""

    email_failures: int
    address_failures: int
    window: timedelta
    idle: timedelta
    lifetime: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            email_failures=settings.dashboard_signin_email_failures,
            address_failures=settings.dashboard_signin_address_failures,
            window=timedelta(minutes=settings.dashboard_signin_window_minutes),
            idle=timedelta(minutes=settings.dashboard_idle_minutes),
            lifetime=timedelta(hours=settings.dashboard_session_hours),
        )


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: a merchant's user, or an operator (who sees every merchant and may pick one to view).
    `merchant_id` scopes every query of the pages: a user's own merchant, or the operator's choice (None:
    none chosen yet)."""

    session_id: bytes
    user_id: str | None
    email: str | None
    operator: bool
    merchant_id: str | None
    merchant_name: str | None
    csrf_token: str
    must_change_password: bool = False  # a user signed in with a password Tender chose: no page until changed

    @property
    def name(self) -> str:
        return "Operator" if self.operator else (self.email or "")


@dataclass(frozen=True, slots=True)
class NewUser:
    user: DashboardUser
    password: str | None  # the generated one-time password, when none was given


@dataclass(frozen=True, slots=True)
class SignedIn:
    token: str  # the cookie's value: shown to this browser only, kept nowhere
    viewer: Viewer


class SignInFailed(Exception):
    """Wrong email or password, or a wrong admin key: the form says no more than that."""


class SignInThrottled(Exception):
    """Too many failures for this email or from this address lately."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed sign-ins")
        self.retry_after = max(1, retry_after)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def create_user(db: Database, merchant_id: str, email: str, password: str | None = None) -> NewUser:
    """A user of `merchant_id`. Without `password`, one is generated and returned once (to print)."""
    email = email.strip()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        raise InvalidRequest("email: must be an email address", param="email")
    if len(merchant_id) > MAX_ID_LENGTH:
        raise NotFound("No such merchant.", param="merchant")
    generated = None
    if password is None:
        password = generated = secrets.token_urlsafe(15)
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"password: must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters", param="password"
        )
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    user = DashboardUser(
        id=new_id(USER_PREFIX),
        merchant_id=merchant_id,
        email=email,
        password_hash=password_hash,
        must_change_password=generated is not None,
        created=datetime.now(UTC),
        last_login=None,
    )
    async with db.transaction() as conn:
        if not await store.merchant_exists(conn, merchant_id):
            raise NotFound("No such merchant.", param="merchant")
        if not await store.insert_user(conn, user):
            raise InvalidRequest("email: a dashboard user with this email exists", param="email")
    return NewUser(user, generated)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _keys(vault: Vault, email: str, address: str) -> tuple[bytes, bytes]:
    return (
        vault.keyed_hash(_PURPOSE, "email\x00" + email),
        vault.keyed_hash(_PURPOSE, "address\x00" + address),
    )


def _throttle(counts: store.FailureCounts, limits: Limits, now: datetime) -> None:
    clears = []
    if counts.by_email >= limits.email_failures and counts.email_clears is not None:
        clears.append(counts.email_clears)
    if counts.by_address >= limits.address_failures and counts.address_clears is not None:
        clears.append(counts.address_clears)
    if clears:
        log.warning("dashboard sign-in refused: too many failures for this email or address")
        raise SignInThrottled(int((max(clears) - now).total_seconds()) + 1)


async def sign_in(
    db: Database,
    vault: Vault,
    limits: Limits,
    *,
    email: str,
    password: str,
    address: str,
    previous_token: str | None = None,
) -> SignedIn:
    """A new session for the user with this email and password (the browser's previous session, if any, is
    ended: a fresh token at every sign-in, so a token planted before it is worth nothing).
    Raises SignInThrottled before checking anything when over the limit, SignInFailed when wrong."""
    email = normalize_email(email)[:MAX_EMAIL_LENGTH]
    email_key, address_key = _keys(vault, email, address)
    async with db.transaction() as conn:
        await store.lock_email(conn, email_key)
        _throttle(await store.count_failures(conn, email_key, address_key, limits.window), limits, datetime.now(UTC))
        user = await store.find_user_by_email(conn, email)
        candidate = password[: MAX_PASSWORD_LENGTH + 1]
        ok = await asyncio.to_thread(_verify, user.password_hash if user else _DUMMY_HASH, candidate)
        if user is None or not ok or user.merchant_id is None:
            await store.insert_failure(conn, email_key, address_key, limits.window)
            failed = True
        else:
            failed = False
            rehash = _hasher.check_needs_rehash(user.password_hash)
            new_hash = await asyncio.to_thread(_hasher.hash, candidate) if rehash else None
            await store.signed_in(conn, user.id, new_hash)
            await store.clear_email_failures(conn, email_key)
            signed = await _new_session(conn, limits, user_id=user.id, merchant_id=user.merchant_id,
                                        previous_token=previous_token)  # fmt: skip
    if failed:  # after the commit: the failure must count
        log.info("dashboard sign-in failed")
        raise SignInFailed
    log.info("dashboard sign-in: user %s of merchant %s", signed.viewer.user_id, signed.viewer.merchant_id)
    return signed


async def operator_sign_in(
    db: Database,
    vault: Vault,
    limits: Limits,
    *,
    admin_key: SecretStr | None,
    key: str,
    address: str,
    previous_token: str | None = None,
) -> SignedIn:
    """An operator's session, for the admin key (TENDER_ADMIN_KEY; none set: nobody signs in as operator)."""
    email_key, address_key = _keys(vault, _OPERATOR_EMAIL, address)
    async with db.transaction() as conn:
        await store.lock_email(conn, address_key)  # the operator's email key is shared: lock per address
        counts = await store.count_failures(conn, email_key, address_key, limits.window)
        # The admin key's failures are limited per address only: a shared email limit would let anyone lock
        # every operator out.
        _throttle(store.FailureCounts(0, counts.by_address, None, counts.address_clears), limits, datetime.now(UTC))
        expected = admin_key.get_secret_value() if admin_key is not None else None
        ok = expected is not None and hmac.compare_digest(key.encode(), expected.encode())
        if not ok:
            await store.insert_failure(conn, email_key, address_key, limits.window)
        else:
            signed = await _new_session(conn, limits, user_id=None, merchant_id=None, previous_token=previous_token)
    if not ok:
        log.warning("dashboard operator sign-in failed: wrong admin key")
        raise SignInFailed
    log.info("dashboard sign-in: operator")
    return signed


async def _new_session(
    conn: Conn, limits: Limits, *, user_id: str | None, merchant_id: str | None, previous_token: str | None
) -> SignedIn:
    if previous_token:
        await store.delete_session(conn, token_hash(previous_token))
    await store.delete_stale_sessions(conn, limits.idle)
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    await store.insert_session(
        conn,
        session_id=token_hash(token),
        user_id=user_id,
        merchant_id=merchant_id,
        csrf_token=csrf,
        lifetime=limits.lifetime,
    )
    session = await store.touch_session(conn, token_hash(token), limits.idle)
    assert session is not None
    return SignedIn(token, _viewer(session))


def _viewer(session: DashboardSession) -> Viewer:
    return Viewer(
        session_id=session.id,
        user_id=session.user_id,
        email=session.email,
        operator=session.operator,
        merchant_id=session.merchant_id,
        merchant_name=session.merchant_name,
        csrf_token=session.csrf_token,
        must_change_password=session.must_change_password,
    )


async def current(db: Database, token: str, limits: Limits, *, touch: bool = True) -> Viewer | None:
    """The viewer of a session token, seen now (which keeps it alive, unless not `touch`: an automatic
    refresh); None when signed out, expired or idle past the timeout (then the row is deleted: it can never
    come back)."""
    if not token or len(token) > 100:
        return None
    session_id = token_hash(token)
    async with db.connection() as conn:
        session = await store.touch_session(conn, session_id, limits.idle, touch=touch)
        if session is None:
            await store.delete_session(conn, session_id)
            return None
    return _viewer(session)


async def sign_out(db: Database, token: str) -> None:
    async with db.connection() as conn:
        await store.delete_session(conn, token_hash(token))


class PasswordRefused(Exception):
    """A password change refused: `param` names the field (current_password, new_password, confirm)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


async def change_password(db: Database, viewer: Viewer, current_password: str, new: str, confirm: str) -> None:
    """The user's own password, changed: the current one must be right, the new one 10 to 200 characters, not
    the current one, and typed twice alike. The user's other sessions end (this one goes on)."""
    if viewer.user_id is None:
        raise NotFound("No such page.")
    if not MIN_PASSWORD_LENGTH <= len(new) <= MAX_PASSWORD_LENGTH:
        raise PasswordRefused(
            f"The new password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters.", "new_password"
        )
    if new != confirm:
        raise PasswordRefused("The two new passwords differ.", "confirm")
    if new == current_password:
        raise PasswordRefused("The new password must differ from the current one.", "new_password")
    new_hash = await asyncio.to_thread(_hasher.hash, new)
    async with db.transaction() as conn:
        user = await store.find_user(conn, viewer.user_id)
        if user is None:
            raise NotFound("No such page.")
        if not await asyncio.to_thread(_verify, user.password_hash, current_password[: MAX_PASSWORD_LENGTH + 1]):
            raise PasswordRefused("The current password is wrong.", "current_password")
        await store.set_password(conn, user.id, new_hash)
        await store.delete_user_sessions(conn, user.id, except_session=viewer.session_id)


async def choose_merchant(db: Database, viewer: Viewer, merchant_id: str | None) -> None:
    """An operator's session views `merchant_id` from now on (None: none). A 404 when there is no such merchant."""
    if not viewer.operator:
        raise NotFound("No such page.")
    async with db.transaction() as conn:
        if merchant_id is not None and (
            len(merchant_id) > MAX_ID_LENGTH or not await store.merchant_exists(conn, merchant_id)
        ):
            raise NotFound("No such merchant.", param="merchant")
        await store.set_session_merchant(conn, viewer.session_id, merchant_id)
