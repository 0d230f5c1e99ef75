"""/admin/v1/reconciliations: past reconciliation runs against each processor's records (services/reconciliation.py),
each with its figures and findings. Behind TENDER_ADMIN_KEY. Runs are made by `tender
reconcile`, the worker and the dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from tender.api.deps import ContainerDep, Operator, StartingAfter, text_query
from tender.api.openapi import OPERATOR_KEY, responses
from tender.errors import InvalidRequest, NotFound
from tender.services import reconciliation
from tender.services.objects import dumps, list_object

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Operator], responses=responses(*OPERATOR_KEY))


@router.get(
    "/reconciliations",
    summary="Past reconciliation runs, newest first",
    responses=responses(InvalidRequest),
)
async def list_reconciliations(
    container: ContainerDep,
    processor: Annotated[str | None, text_query("Only runs against this processor", 64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
) -> Response:
    """Each run: `{"id": "rec_...", "object": "reconciliation", "processor", "date",
    "trigger": "cli"|"worker"|"dashboard", "status": "running"|"completed"|"failed", "matched", "missing_in_tender",
    "missing_at_processor", "mismatched", "error", "created", "finished"}`."""
    rows, has_more = await reconciliation.list_runs(
        container.db, processor=processor, limit=limit, starting_after=starting_after
    )
    body = list_object(rows, has_more=has_more, url="/admin/v1/reconciliations")
    return Response(dumps(body), media_type="application/json")


@router.get(
    "/reconciliations/{reconciliation_id}",
    summary="One reconciliation run with its findings",
    responses=responses(NotFound),
)
async def get_reconciliation(reconciliation_id: str, container: ContainerDep) -> Response:
    if len(reconciliation_id) > 64:
        raise NotFound("No such reconciliation.", param="id")
    found = await reconciliation.get_run(container.db, reconciliation_id)
    return Response(dumps(found), media_type="application/json")
