"""The old names of the claim (now store/claims.py) and of the lease renewal (now worker/pump.py), for the
pumps not yet on the generic batch pump. Removed once they all are (issue 12 item 2)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from tender.store.claims import Claim, claim_due
from tender.store.db import Database
from tender.worker import pump

__all__ = ["Claim", "claim_due", "held"]


@contextlib.asynccontextmanager
async def held(db: Database, table: str, claim: Claim, lease_seconds: float) -> AsyncIterator[None]:
    async with pump.held(db, table, claim.token, [r["id"] for r in claim.rows], lease_seconds):
        yield
