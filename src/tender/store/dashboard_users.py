"""SQL for the dashboard's users, their server-side sessions and the sign-in failures the rate limit counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tender.store.db import Conn
from tender.store.rows import fetch_one


@dataclass(frozen=True, slots=True)
class DashboardUser:
    id: str
    merchant_id: str | None
    email: str
    password_hash: str
    must_change_password: bool
    created: datetime
    last_login: datetime | None


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """A live session as a request sees it, with its user's email and the viewed merchant's name."""

    id: bytes
    user_id: str | None
    operator: bool
    merchant_id: str | None
    csrf_token: str
    created: datetime
    last_seen: datetime
    expires: datetime
    email: str | None
    merchant_name: str | None
    must_change_password: bool


_USER = "id, merchant_id, email, password_hash, must_change_password, created, last_login"


async def insert_user(conn: Conn, user: DashboardUser) -> bool:
    """False when the email (case-insensitively) already has a user: nothing written."""
    cur = await conn.execute(
        "INSERT INTO dashboard_users (id, merchant_id, email, password_hash, must_change_password, created)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (lower(email)) DO NOTHING",
        (user.id, user.merchant_id, user.email, user.password_hash, user.must_change_password, user.created),
    )
    return cur.rowcount == 1


async def find_user_by_email(conn: Conn, email: str) -> DashboardUser | None:
    return await fetch_one(
        conn, DashboardUser, f"SELECT {_USER} FROM dashboard_users WHERE lower(email) = lower(%s)", (email,)
    )


async def signed_in(conn: Conn, user_id: str, password_hash: str | None) -> None:
    """Record a successful sign-in; a new hash replaces the old one (Argon2 parameters raised since)."""
    await conn.execute(
        "UPDATE dashboard_users SET last_login = now(), password_hash = coalesce(%s, password_hash) WHERE id = %s",
        (password_hash, user_id),
    )


async def find_user(conn: Conn, user_id: str) -> DashboardUser | None:
    return await fetch_one(
        conn, DashboardUser, f"SELECT {_USER} FROM dashboard_users WHERE id = %s FOR UPDATE", (user_id,)
    )


async def set_password(conn: Conn, user_id: str, password_hash: str) -> None:
    await conn.execute(
        "UPDATE dashboard_users SET password_hash = %s, must_change_password = false WHERE id = %s",
        (password_hash, user_id),
    )


async def delete_user_sessions(conn: Conn, user_id: str, *, except_session: bytes) -> int:
    cur = await conn.execute(
        "DELETE FROM dashboard_sessions WHERE user_id = %s AND id <> %s", (user_id, except_session)
    )
    return cur.rowcount


async def insert_session(
    conn: Conn,
    *,
    session_id: bytes,
    user_id: str | None,
    merchant_id: str | None,
    csrf_token: str,
    lifetime: timedelta,
) -> None:
    await conn.execute(
        "INSERT INTO dashboard_sessions (id, user_id, operator, merchant_id, csrf_token, expires)"
        " VALUES (%s, %s, %s, %s, %s, now() + %s)",
        (session_id, user_id, user_id is None, merchant_id, csrf_token, lifetime),
    )


_SESSION_VIEW = """
    SELECT s.id, s.user_id, s.operator, s.merchant_id, s.csrf_token, s.created, s.last_seen, s.expires,
           u.email, m.name AS merchant_name, coalesce(u.must_change_password, false) AS must_change_password
    FROM s
    LEFT JOIN dashboard_users u ON u.id = s.user_id
    LEFT JOIN merchants m ON m.id = s.merchant_id
"""


async def touch_session(
    conn: Conn, session_id: bytes, idle: timedelta, *, touch: bool = True
) -> DashboardSession | None:
    """The session, seen now: None when there is none, it expired, or it was idle longer than `idle`. With
    `touch` its last_seen becomes now, in the same statement as the check (a concurrent request cannot tear
    them apart); without, it is only read (a page's automatic refresh is not the user's activity)."""
    live = "id = %s AND expires > now() AND last_seen > now() - %s"
    if touch:
        query = f"WITH s AS (UPDATE dashboard_sessions SET last_seen = now() WHERE {live} RETURNING *) {_SESSION_VIEW}"
    else:
        query = f"WITH s AS (SELECT * FROM dashboard_sessions WHERE {live}) {_SESSION_VIEW}"
    return await fetch_one(conn, DashboardSession, query, (session_id, idle))


async def delete_session(conn: Conn, session_id: bytes) -> None:
    await conn.execute("DELETE FROM dashboard_sessions WHERE id = %s", (session_id,))


async def delete_stale_sessions(conn: Conn, idle: timedelta) -> int:
    """Sessions past their expiry or idle too long (nobody can use them again): housekeeping at each sign-in."""
    cur = await conn.execute(
        "DELETE FROM dashboard_sessions WHERE expires <= now() OR last_seen <= now() - %s", (idle,)
    )
    return cur.rowcount


async def set_session_merchant(conn: Conn, session_id: bytes, merchant_id: str | None) -> None:
    await conn.execute(
        "UPDATE dashboard_sessions SET merchant_id = %s WHERE id = %s AND operator", (merchant_id, session_id)
    )


@dataclass(frozen=True, slots=True)
class FailureCounts:
    by_email: int
    by_address: int
    # When the oldest failure counted for each stops counting (None: no failures).
    email_clears: datetime | None
    address_clears: datetime | None


async def count_failures(conn: Conn, email_key: bytes, address_key: bytes, window: timedelta) -> FailureCounts:
    row = await fetch_one(
        conn,
        FailureCounts,
        """
        SELECT count(*) FILTER (WHERE email_key = %(email)s) AS by_email,
               count(*) FILTER (WHERE address_key = %(address)s) AS by_address,
               min(at) FILTER (WHERE email_key = %(email)s) + %(window)s AS email_clears,
               min(at) FILTER (WHERE address_key = %(address)s) + %(window)s AS address_clears
        FROM dashboard_signin_failures
        WHERE (email_key = %(email)s OR address_key = %(address)s) AND at > now() - %(window)s
        """,
        {"email": email_key, "address": address_key, "window": window},
    )
    assert row is not None
    return row


async def insert_failure(conn: Conn, email_key: bytes, address_key: bytes, window: timedelta) -> None:
    """Count one failure, and forget those past the window (the table stays the size of one window)."""
    await conn.execute("DELETE FROM dashboard_signin_failures WHERE at <= now() - %s", (window,))
    await conn.execute(
        "INSERT INTO dashboard_signin_failures (email_key, address_key) VALUES (%s, %s)", (email_key, address_key)
    )


async def clear_email_failures(conn: Conn, email_key: bytes) -> None:
    await conn.execute("DELETE FROM dashboard_signin_failures WHERE email_key = %s", (email_key,))


async def lock_email(conn: Conn, email_key: bytes) -> None:
    """Serialize sign-ins of one email (in the caller's transaction): parallel guesses cannot all pass the
    count before any of them is recorded."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 17))", (email_key.hex(),))


async def merchant_exists(conn: Conn, merchant_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM merchants WHERE id = %s", (merchant_id,))
    return await cur.fetchone() is not None
