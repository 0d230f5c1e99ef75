"""Webhook endpoints made for a test, and removed after it."""

from __future__ import annotations

from typing import Any

from tender.services import webhook_endpoints
from tender.services.objects import endpoint_object

# The database is shared by the session: an endpoint left behind would get later tests' events (a settlement run
# settles every merchant) and send them to a receiver that is gone. A fixture calls delete_made_endpoints.
made_endpoints: list[str] = []


async def make_endpoint(container: Any, merchant: Any, url: str, events: list[str] | None = None) -> dict[str, Any]:
    """Created through the service, as the API would with TENDER_WEBHOOK_ALLOW_PRIVATE (the receiver is local)."""
    request = webhook_endpoints.EndpointCreate(url=url, events=events or ["*"])
    async with container.db.transaction() as conn:
        endpoint, secret = await webhook_endpoints.create(
            conn, container.vault, merchant.merchant.id, request, allow_private=True
        )
    made_endpoints.append(endpoint.id)
    return endpoint_object(endpoint, secret=secret)


async def delete_made_endpoints(container: Any) -> None:
    async with container.db.connection() as conn:
        await conn.execute("DELETE FROM webhook_endpoints WHERE id = ANY(%s)", (made_endpoints,))
    made_endpoints.clear()
