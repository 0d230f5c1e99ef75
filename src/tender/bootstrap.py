"""The composition root: settings, the database pool, the vault and the processors, wired once.

Nothing opens a connection at import time; entry points (API app, worker, CLI) build a Container. Not an
entry point itself but a layer of its own between them and the services (pyproject.toml's import
contracts): it may import services (the Authenticator), store, processors and domain to wire them, and
only entry points (and tender.http) import it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tender.config import Settings
from tender.processors import registry
from tender.processors.base import Processor
from tender.services.intake import PaymentIntake
from tender.services.merchants import Authenticator
from tender.store.db import Database
from tender.vault import Vault, decode_key, load_or_create_key_file

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    db: Database
    vault: Vault
    processors: dict[str, Processor]
    authenticator: Authenticator = field(init=False)
    intake: PaymentIntake = field(init=False)  # the API's batches of new payments (idle in other processes)

    def __post_init__(self) -> None:
        self.authenticator = Authenticator(self.db, listen_url=self.listen_url)
        self.intake = PaymentIntake(self.db, self.vault, self.settings)

    @property
    def listen_url(self) -> str:
        """Where LISTEN connections go: PostgreSQL itself, even when the pool goes through a pooler."""
        return self.settings.database_listen_url or self.db.url

    @property
    def default_processor(self) -> str:
        """The processor new payments go to (TENDER_DEFAULT_PROCESSOR; processors/registry.py checks it is on)."""
        return self.settings.default_processor

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        for processor in self.processors.values():
            await processor.aclose()
        await self.db.close()


def load_vault(settings: Settings) -> Vault:
    if settings.vault_key is not None:
        return Vault(decode_key(settings.vault_key.get_secret_value()))
    if settings.database_url is not None:
        log.warning("TENDER_VAULT_KEY is not set: using a key file; every process must share it")
    return Vault(load_or_create_key_file(settings.data_dir.expanduser().resolve() / "vault.key"))


def build(settings: Settings, database_url: str) -> Container:
    processors = registry.build(settings)  # first: a processor misconfigured stops the start before anything opens
    db = Database(database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    return Container(settings=settings, db=db, vault=load_vault(settings), processors=processors)
