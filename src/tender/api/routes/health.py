"""Liveness, readiness (database reachable, schema current) and Prometheus metrics (operator only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tender.api.deps import ContainerDep, operator
from tender.api.metrics import refresh_processor_gauges
from tender.api.openapi import OPERATOR_KEY, responses
from tender.api.responses import JSON
from tender.services import readiness

router = APIRouter(tags=["operations"])
READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", summary="The process is alive")
async def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get("/readyz", summary="The database answers and its schema is current")
async def readyz(container: ContainerDep) -> JSON:
    ready = await readiness.readiness(container.db, wait_seconds=READY_TIMEOUT_SECONDS)
    if ready.error is not None:
        return JSON({"status": "unavailable", "database": ready.error}, status_code=503)
    if ready.current != ready.expected:
        return JSON({"status": "migrating", "schema": ready.current, "expected": ready.expected}, status_code=503)
    return JSON({"status": "ready", "schema": ready.current})


async def metrics_reader(request: Request, container: ContainerDep) -> None:
    """The operator key, unless TENDER_METRICS_PUBLIC (api/metrics.py says why)."""
    if not container.settings.metrics_public:
        await operator(request, container)


@router.get(
    "/metrics",
    summary="Prometheus metrics (operator key, unless TENDER_METRICS_PUBLIC)",
    dependencies=[Depends(metrics_reader)],
    responses=responses(*OPERATOR_KEY),  # a scraper without the key: TENDER_METRICS_ADDRESS
)
async def metrics(container: ContainerDep) -> Response:
    await refresh_processor_gauges(container.db, container.settings.circuit_policy, container.processors)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
