"""Schema migrations (Alembic), driven from code so `tender migrate` and `tender up` need no alembic.ini."""

from __future__ import annotations

import functools

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from tender.store.db import Conn


def sqlalchemy_url(url: str) -> str:
    """Alembic speaks SQLAlchemy: the same libpq URL, with the psycopg (v3) driver named."""
    if url.startswith("postgresql+psycopg://"):
        return url
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    # a key=value conninfo string
    return "postgresql+psycopg:///?" + "&".join(url.split())


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "tender.store:migrations")
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


@functools.cache
def head_revision() -> str | None:
    """The newest migration shipped with this code (fixed for the life of the process)."""
    return ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()


def current_revision(url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


async def schema_revision(conn: Conn) -> str | None:
    """The revision the database's schema is at, on a pooled connection (readiness asks it every probe)."""
    cur = await conn.execute("SELECT version_num FROM alembic_version")
    row = await cur.fetchone()
    return row["version_num"] if row else None
