"""/webhooks/{processor}: inbound notifications from processors, verified by their signature."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from tender.api.deps import ContainerDep
from tender.api.openapi import responses
from tender.errors import InvalidCharacter, InvalidJson, NotFound, NotificationRejected, WebhookNotConfigured
from tender.services import notifications, stripe_webhooks
from tender.services.objects import dumps

router = APIRouter(tags=["processor notifications"])


# Declared before /webhooks/{processor}, which would otherwise match it: Stripe signs its own way.
@router.post(
    "/webhooks/stripe",
    summary="Receive a Stripe event",
    responses=responses(NotificationRejected, InvalidJson, InvalidCharacter, WebhookNotConfigured),
)
async def receive_stripe(request: Request, container: ContainerDep) -> Response:
    """Verified with Stripe's own `construct_event` (raw body, `Stripe-Signature`, 300 s tolerance) against
    TENDER_STRIPE_WEBHOOK_SECRET: 400 and nothing stored if not. Stored and applied at most once by Stripe's
    event id, never moving a payment backwards; an event about an object Tender does not know is stored and
    answered 200, so Stripe stops retrying it."""
    secret = container.settings.stripe_webhook_secret
    outcome = await stripe_webhooks.receive(
        container.db,
        secret.get_secret_value() if secret is not None else None,
        request.headers,
        await request.body(),
        business_tz=container.settings.business_tz,
        action_lookup=timedelta(seconds=container.settings.worker_action_lookup_seconds),
    )
    return Response(dumps({"received": True, "outcome": outcome}), media_type="application/json")


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
