"""Databases of a test's own on the test PostgreSQL server: the session's (conftest), a migration test's, and one
for a test whose work is global (a purge, a fault test's workers and ledger check) and must not meet the rest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from tender.store import engine, migrate


@contextmanager
def fresh_database(server_url: str, prefix: str = "tender_test", *, revision: str = "head") -> Iterator[str]:
    """A new database on `server_url`, migrated to `revision`; its URL. Dropped afterwards, even if still in use."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine.ensure_database(server_url, name)
    url = engine.with_database(server_url, name)
    try:
        migrate.upgrade(url, revision)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
