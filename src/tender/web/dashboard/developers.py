"""For the merchant's developers: webhook endpoints with their delivery log (each delivery's status, attempts
and response codes), resending an event, rotating an endpoint's signing secret (the new one shown once), and
the API keys (hints only; rolling them shows the new keys once).

Each action is a confirmation page (GET) whose form POSTs with the CSRF token and a fresh Idempotency-Key,
run through the API's services and idempotency (services/dashboard.py). A page that shows a secret is sent
with no-store like every dashboard page, and the secret is in no URL.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from tender.domain.errors import DomainError
from tender.errors import InvalidRequest, NotFound, TenderError
from tender.http.deps import ContainerDep
from tender.services import dashboard
from tender.services import events as event_service
from tender.services import webhook_endpoints as endpoint_service
from tender.services.dashboard_users import Viewer
from tender.web.dashboard.auth import FormDep, MerchantViewerDep, PageNotFound, redirect, safe_next
from tender.web.dashboard.layout import confirmation_key, render
from tender.web.dashboard.money import _cursor
from tender.web.dashboard.payments import error_of, status_of

router = APIRouter()
Text = Annotated[str | None, Query()]
DELIVERY_STATUSES = ("pending", "succeeded", "failed")


def _merchant(viewer: Viewer) -> str:
    if viewer.merchant_id is None:
        raise PageNotFound
    return viewer.merchant_id


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks(request: Request, viewer: MerchantViewerDep, container: ContainerDep) -> HTMLResponse:
    page = await endpoint_service.list_(container.db, _merchant(viewer), limit=100, starting_after=None)
    return render(request, "dashboard/webhooks.html", viewer, title="Webhooks", endpoints=page.rows)


@router.get("/webhooks/{endpoint_id}", response_class=HTMLResponse)
async def webhook(
    request: Request, endpoint_id: str, viewer: MerchantViewerDep, container: ContainerDep, status: Text = None,
    starting_after: Text = None, done: Text = None,
) -> HTMLResponse:  # fmt: skip
    merchant_id = _merchant(viewer)
    try:
        endpoint = await endpoint_service.retrieve(container.db, merchant_id, endpoint_id)
    except NotFound:
        raise PageNotFound from None
    status = status if status in DELIVERY_STATUSES else None
    page = await endpoint_service.list_deliveries(
        container.db, merchant_id, endpoint_id, limit=dashboard.PAGE_SIZE, starting_after=_cursor(starting_after),
        status=status, event=None,
    )  # fmt: skip
    query = f"status={status}&" if status else ""
    rows = page.rows
    next_url = (
        f"/dashboard/webhooks/{endpoint_id}?{query}starting_after={rows[-1].delivery.id}"
        if page.has_more and rows
        else None
    )
    return render(
        request, "dashboard/webhook.html", viewer, title=f"Webhook endpoint {endpoint_id}", endpoint=endpoint,
        deliveries=rows, status=status or "", statuses=DELIVERY_STATUSES, next_url=next_url,
        notice="Resend queued: the event is sent again now." if done == "resend" else None,
    )  # fmt: skip


def _confirm_page(
    request: Request, viewer: Viewer, *, title: str, what: str, action: str, button: str, back: str,
    fields: dict[str, str] | None = None, key: str | None = None, error: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    return render(
        request, "dashboard/developers_confirm.html", viewer, status_code=status_code, title=title, what=what,
        action=action, button=button, back=back, fields=fields or {}, idempotency_key=key or str(uuid.uuid4()),
        error=error,
    )  # fmt: skip


# -- resend an event ---------------------------------------------------------------------------------------


def _resend_back(back: str | None, endpoint: str | None) -> str:
    if back:
        return safe_next(back)
    return f"/dashboard/webhooks/{endpoint}" if endpoint else "/dashboard/webhooks"


async def _event(container: Any, merchant_id: str, event_id: str) -> Any:
    try:
        return await event_service.get(container.db, merchant_id, event_id)
    except NotFound:
        raise PageNotFound from None


@router.get("/webhooks/events/{event_id}/resend", response_class=HTMLResponse)
async def resend_confirm(
    request: Request, event_id: str, viewer: MerchantViewerDep, container: ContainerDep, endpoint: Text = None,
    back: Text = None, k: Text = None,
) -> HTMLResponse:  # fmt: skip
    event = await _event(container, _merchant(viewer), event_id)
    endpoint = (endpoint or "")[:64] or None
    to = "its endpoint" if endpoint else "every enabled endpoint listening to its type"
    return _confirm_page(
        request, viewer, title="Resend an event", what=f"Send the {event.type} event {event.id} again, now, to {to}.",
        action=f"/dashboard/webhooks/events/{event_id}/resend", button="Resend",
        back=_resend_back(back, endpoint), fields={"endpoint": endpoint or "", "back": _resend_back(back, endpoint)},
        key=confirmation_key(f"resend-{event.id}-{endpoint or 'all'}", k),
    )  # fmt: skip


@router.post("/webhooks/events/{event_id}/resend")
async def resend(request: Request, event_id: str, form: FormDep, container: ContainerDep) -> Response:
    viewer = form.viewer
    merchant_id = _merchant(viewer)
    event = await _event(container, merchant_id, event_id)
    endpoint = form.get("endpoint").strip() or None
    back = _resend_back(form.get("back") or None, endpoint)
    key = form.get("idempotency_key").strip()
    try:
        _require_key(key)
        result = await dashboard.resend_event(container.db, container.vault, merchant_id, event.id, endpoint, key=key)
        if result.status_code >= 400:
            raise _Replayed(result)
    except (TenderError, DomainError, _Replayed) as exc:
        if isinstance(exc, NotFound):
            raise PageNotFound from None
        return _confirm_page(
            request, viewer, title="Resend an event", what=f"Send the {event.type} event {event.id} again.",
            action=f"/dashboard/webhooks/events/{event_id}/resend", button="Resend", back=back,
            fields={"endpoint": endpoint or "", "back": back}, key=key, error=_error(exc), status_code=_status(exc),
        )  # fmt: skip
    sep = "&" if "?" in back else "?"
    return redirect(f"{back}{sep}done=resend")


class _Replayed(Exception):
    """A replayed answer that was an error: shown as that error."""

    def __init__(self, result: dashboard.ActionResult) -> None:
        self.result = result


def _error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, _Replayed):
        error: dict[str, Any] = exc.result.body.get("error") or {}
        return error
    return error_of(exc)


def _status(exc: Exception) -> int:
    return exc.result.status_code if isinstance(exc, _Replayed) else status_of(exc)


def _require_key(key: str) -> None:
    if not key:
        raise InvalidRequest("Idempotency-Key: the form lacks one; reload it", param="Idempotency-Key")


# -- rotate an endpoint's secret ------------------------------------------------------------------------


@router.get("/webhooks/{endpoint_id}/rotate", response_class=HTMLResponse)
async def rotate_confirm(
    request: Request, endpoint_id: str, viewer: MerchantViewerDep, container: ContainerDep, k: Text = None
) -> HTMLResponse:
    try:
        endpoint = await endpoint_service.retrieve(container.db, _merchant(viewer), endpoint_id)
    except NotFound:
        raise PageNotFound from None
    return _confirm_page(
        request, viewer, title="Rotate the signing secret",
        what=f"Make a new signing secret for {endpoint.url}. The old one keeps signing beside it for 24 hours, so"
        " your receiver can switch without missing an event. The new secret is shown once.",
        action=f"/dashboard/webhooks/{endpoint_id}/rotate", button="Rotate the secret",
        back=f"/dashboard/webhooks/{endpoint_id}", key=confirmation_key(f"rotate-{endpoint.id}", k),
    )  # fmt: skip


@router.post("/webhooks/{endpoint_id}/rotate")
async def rotate(request: Request, endpoint_id: str, form: FormDep, container: ContainerDep) -> Response:
    viewer = form.viewer
    merchant_id = _merchant(viewer)
    key = form.get("idempotency_key").strip()
    try:
        _require_key(key)
        result = await dashboard.rotate_secret(container.db, container.vault, merchant_id, endpoint_id, key=key)
        if result.status_code >= 400:
            raise _Replayed(result)
    except (TenderError, DomainError, _Replayed) as exc:
        if isinstance(exc, NotFound):
            raise PageNotFound from None
        return _confirm_page(
            request, viewer, title="Rotate the signing secret", what="Make a new signing secret.",
            action=f"/dashboard/webhooks/{endpoint_id}/rotate", button="Rotate the secret",
            back=f"/dashboard/webhooks/{endpoint_id}", key=key, error=_error(exc), status_code=_status(exc),
        )  # fmt: skip
    return render(
        request, "dashboard/developers_secret.html", viewer, title="New signing secret",
        back=f"/dashboard/webhooks/{endpoint_id}", replayed=result.replayed,
        secrets=[("Signing secret", str(result.body.get("secret", "")))],
        intro=f"The new signing secret of {result.body.get('url')}. Copy it now: it is not shown again.",
    )  # fmt: skip


# -- API keys ---------------------------------------------------------------------------------------------


@router.get("/api-keys", response_class=HTMLResponse)
async def api_keys(request: Request, viewer: MerchantViewerDep, container: ContainerDep) -> HTMLResponse:
    keys = await dashboard.api_key_hints(container.db, _merchant(viewer))
    return render(request, "dashboard/developers_keys.html", viewer, title="API keys", keys=keys)


_ROLL_WHAT = (
    "Make a new secret key and a new publishable key. The keys you use now stop working at once: deploy the new"
    " ones straight away. The new keys are shown once."
)


@router.get("/api-keys/roll", response_class=HTMLResponse)
async def roll_confirm(request: Request, viewer: MerchantViewerDep, k: Text = None) -> HTMLResponse:
    return _confirm_page(
        request, viewer, title="Roll the API keys", what=_ROLL_WHAT, action="/dashboard/api-keys/roll",
        button="Roll the keys", back="/dashboard/api-keys", key=confirmation_key("roll-keys", k),
    )  # fmt: skip


@router.post("/api-keys/roll")
async def roll(request: Request, form: FormDep, container: ContainerDep) -> Response:
    viewer = form.viewer
    merchant_id = _merchant(viewer)
    key = form.get("idempotency_key").strip()
    try:
        _require_key(key)
        result = await dashboard.roll_keys(container.db, container.vault, merchant_id, key=key)
        if result.status_code >= 400:
            raise _Replayed(result)
    except (TenderError, DomainError, _Replayed) as exc:
        return _confirm_page(
            request, viewer, title="Roll the API keys", what=_ROLL_WHAT, action="/dashboard/api-keys/roll",
            button="Roll the keys", back="/dashboard/api-keys", key=key, error=_error(exc), status_code=_status(exc),
        )  # fmt: skip
    container.authenticator.forget()  # this process at once; the others when the roll's notification arrives
    return render(
        request, "dashboard/developers_secret.html", viewer, title="New API keys", back="/dashboard/api-keys",
        replayed=result.replayed, intro="Your new keys. Copy them now: they are not shown again.",
        secrets=[("Secret key", str(result.body.get("secret_key", ""))),
                 ("Publishable key", str(result.body.get("publishable_key", "")))],
    )  # fmt: skip
