"""Liveness, readiness (database reachable, schema current) and Prometheus metrics (operator only)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tender.api.deps import ContainerDep, operator
from tender.api.responses import JSON
from tender.store import migrate

router = APIRouter(tags=["operations"])
READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", summary="The process is alive")
async def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get("/readyz", summary="The database answers and its schema is current")
async def readyz(container: ContainerDep) -> JSON:
    head = await asyncio.to_thread(migrate.head_revision)
    try:
        # A probe answers in time: a database that is down is a 503 within seconds, not after the
        # pool's own wait for a connection.
        async with container.db.connection(wait_seconds=READY_TIMEOUT_SECONDS) as conn:
            cur = await conn.execute("SELECT version_num FROM alembic_version")
            row = await cur.fetchone()
    except Exception as exc:
        return JSON({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    current = row["version_num"] if row else None
    if current != head:
        return JSON({"status": "migrating", "schema": current, "expected": head}, status_code=503)
    return JSON({"status": "ready", "schema": current})


async def metrics_reader(request: Request, container: ContainerDep) -> None:
    """The operator key, unless TENDER_METRICS_PUBLIC (api/metrics.py says why)."""
    if not container.settings.metrics_public:
        await operator(request, container)


@router.get(
    "/metrics",
    summary="Prometheus metrics (operator key, unless TENDER_METRICS_PUBLIC)",
    dependencies=[Depends(metrics_reader)],
    responses={401: {"description": "No operator key (see TENDER_METRICS_ADDRESS for a scraper)."}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
