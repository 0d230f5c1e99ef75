"""What every entry point needs before it starts: logging and the database URL (embedded or external)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tender.config import Settings
from tender.store import engine

DATABASE_NAME = "tender"


@dataclass
class ResolvedDatabase:
    url: str
    embedded: Any = None  # the embedded server's handle, kept alive while the process runs


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def resolve_database(settings: Settings) -> ResolvedDatabase:
    if settings.database_url:
        return ResolvedDatabase(settings.database_url)
    server = engine.start_embedded(settings.data_dir)
    admin_url = engine.embedded_url(server)
    engine.ensure_database(admin_url, DATABASE_NAME)
    return ResolvedDatabase(engine.with_database(admin_url, DATABASE_NAME), server)
