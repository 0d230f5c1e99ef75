"""/webhooks/{processor}: inbound notifications from processors, verified by their signature."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from tender.api.deps import ContainerDep
from tender.api.openapi import responses
from tender.errors import InvalidCharacter, NotFound, NotificationRejected
from tender.services import notifications
from tender.services.objects import dumps

router = APIRouter(tags=["processor notifications"])


@router.post(
    "/webhooks/{processor}",
    summary="Receive a processor's notification",
    responses=responses(NotificationRejected, InvalidCharacter, NotFound),
)
async def receive(processor: str, request: Request, container: ContainerDep) -> Response:
    """Signature verified (400 if not), deduplicated by the processor's event id, applied at most once and
    never moving a payment's status backwards. Answers 200 once stored, so the processor stops retrying."""
    outcome = await notifications.receive(
        container.db,
        container.processors,
        processor,
        request.headers,
        await request.body(),
        business_tz=container.settings.business_tz,
        action_lookup=timedelta(seconds=container.settings.worker_action_lookup_seconds),
    )
    return Response(dumps({"received": True, "outcome": outcome}), media_type="application/json")
