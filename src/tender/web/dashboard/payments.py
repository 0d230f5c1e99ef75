"""The payments pages: the search (id, reference, last4, customer, status, dates; cursor pages, newest
first), one payment with its timeline, payables and refunds, and its actions.

An action (capture, cancel, refund) is two steps without JavaScript: the payment's page sends a GET to a
confirmation page, which says what will happen and carries the CSRF token and an Idempotency-Key; its POST runs
the API's own service under the API's idempotency (services/dashboard.py), so submitting the form twice acts once.
The key comes from a nonce the payment's page puts in its action forms (`k`; layout.confirmation_key): the
browser's Back to the confirmation page asks again with the same nonce and gets the same key, so confirming again
shows the first outcome instead of refunding twice; a new visit to the payment's page is a new nonce. An error is
shown as the API names it (code, message, param), and nothing is done.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from tender.domain.errors import DomainError
from tender.domain.models import Payment
from tender.domain.payments import PaymentStatus
from tender.errors import DomainRuleViolated, InvalidRequest, NotFound, TenderError
from tender.http.deps import ContainerDep
from tender.services import dashboard
from tender.services.dashboard_users import Viewer
from tender.web.dashboard.auth import FormDep, MerchantViewerDep, PageNotFound, redirect
from tender.web.dashboard.layout import confirmation_key, money, render

router = APIRouter()

# What each action is called on its page, and its confirmation button's words.
ACTIONS: dict[str, tuple[str, str]] = {
    "capture": ("Capture the payment", "Capture"),
    "cancel": ("Cancel the payment", "Cancel the payment"),
    "refund": ("Refund the payment", "Refund"),
}
STATUSES = [s.value for s in PaymentStatus]
Text = Annotated[str | None, Query()]


def error_of(exc: Exception) -> dict[str, Any]:
    """An error as the API's body names it: type, code, message, param."""
    if isinstance(exc, DomainError):
        exc = DomainRuleViolated(exc)  # as the API's handler renders it
    assert isinstance(exc, TenderError)
    error: dict[str, Any] = exc.body()["error"]
    return error


def status_of(exc: Exception) -> int:
    return exc.status_code if isinstance(exc, TenderError) else 400


@router.get("/payments", response_class=HTMLResponse)
async def payments(
    request: Request,
    viewer: MerchantViewerDep,
    container: ContainerDep,
    q: Text = None,
    status: Text = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: Text = None,
    starting_after: Text = None,
) -> HTMLResponse:
    assert viewer.merchant_id is not None
    form = {"q": (q or "")[:255], "status": status or "", "from": (from_ or "")[:10], "to": (to or "")[:10]}
    error = None
    rows: list[Payment] = []
    has_more = False
    try:
        search = dashboard.parse_search(q, status, from_, to, container.settings.business_tz)
        page = await dashboard.search_payments(container.db, viewer.merchant_id, search, starting_after=starting_after)
        rows, has_more = page.rows, page.has_more
    except InvalidRequest as exc:
        error = error_of(exc)
    query = "&".join(f"{k}={v}" for k, v in form.items() if v)
    next_url = None
    if has_more and rows:
        next_url = f"/dashboard/payments?{query + '&' if query else ''}starting_after={rows[-1].id}"
    return render(
        request, "dashboard/payments.html", viewer, status_code=400 if error else 200, title="Payments",
        payments=rows, form=form, statuses=STATUSES, error=error, next_url=next_url,
        first_url=f"/dashboard/payments?{query}" if starting_after else None,
    )  # fmt: skip


async def _view(container: Any, viewer: Viewer, payment_id: str) -> dashboard.PaymentView:
    assert viewer.merchant_id is not None
    try:
        return await dashboard.payment_view(container.db, viewer.merchant_id, payment_id)
    except NotFound:
        raise PageNotFound from None


def _actions(view: dashboard.PaymentView) -> list[str]:
    status = view.payment.status
    actions = []
    if status == PaymentStatus.REQUIRES_CAPTURE:
        actions.append("capture")
    if status in (PaymentStatus.REQUIRES_CAPTURE, PaymentStatus.REQUIRES_ACTION):
        actions.append("cancel")
    if status == PaymentStatus.SUCCEEDED and view.refundable > 0:
        actions.append("refund")
    return actions


@router.get("/payments/{payment_id}", response_class=HTMLResponse)
async def payment(
    request: Request, payment_id: str, viewer: MerchantViewerDep, container: ContainerDep, done: Text = None
) -> HTMLResponse:
    view = await _view(container, viewer, payment_id)
    notice = {
        "capture": "Capture requested: the payment is captured in a moment.",
        "cancel": "Cancellation requested: the payment is canceled in a moment.",
        "refund": "Refund requested: it is sent to the processor in a moment.",
        "resend": "Resend queued: the event is sent again now.",
    }.get(done or "")
    return render(
        request, "dashboard/payment.html", viewer, title=f"Payment {view.payment.id}", view=view, p=view.payment,
        actions=_actions(view), notice=notice, card=view.payment.payment_method.get("card") or {},
    )  # fmt: skip


def _confirm(
    request: Request,
    viewer: Viewer,
    view: dashboard.PaymentView,
    action: str,
    amount_text: str,
    *,
    key: str | None = None,
    error: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    p = view.payment
    amount = None
    if error is None and amount_text:
        try:
            amount = dashboard.parse_amount(amount_text, p.currency)
        except InvalidRequest as exc:
            error, status_code = error_of(exc), 400
    if action == "refund":
        shown = money(amount if amount is not None else view.refundable, p.currency)
        what = f"Refund {shown} of this payment to the shopper's {_method(p)}."
    elif action == "capture":
        shown = money(amount if amount is not None else p.amount, p.currency)
        what = f"Capture {shown} of the {money(p.amount, p.currency)} authorized."
    else:
        what = "Cancel this payment: the authorization is released and nothing is charged."
    title, button = ACTIONS[action]
    return render(
        request, "dashboard/payment_confirm.html", viewer, status_code=status_code, title=title, p=p,
        action=action, what=what, button=button, amount=amount_text, error=error,
        idempotency_key=key or str(uuid.uuid4()),
    )  # fmt: skip


def _method(p: Payment) -> str:
    card = p.payment_method.get("card") or {}
    if card.get("last4"):
        return f"{str(card.get('brand') or 'card').title()} card ending {card['last4']}"
    return str(p.payment_method.get("type") or "payment method")


def _action(action: str) -> str:
    if action not in ACTIONS:
        raise PageNotFound
    return action


@router.get("/payments/{payment_id}/{action}", response_class=HTMLResponse)
async def confirm(
    request: Request,
    payment_id: str,
    action: str,
    viewer: MerchantViewerDep,
    container: ContainerDep,
    amount: Text = None,
    k: Text = None,
) -> HTMLResponse:
    """The confirmation step: what the action will do, and the form that does it."""
    view = await _view(container, viewer, payment_id)
    action = _action(action)
    amount_text = (amount or "")[:32]  # in the key too: another amount from the same page is another action
    key = confirmation_key(f"{action}-{payment_id}-{amount_text.strip() or 'all'}", k)
    return _confirm(request, viewer, view, action, amount_text, key=key)


@router.post("/payments/{payment_id}/{action}")
async def act(request: Request, payment_id: str, action: str, form: FormDep, container: ContainerDep) -> Response:
    """Runs the action once per Idempotency-Key (the form's): a second submission shows the first's outcome."""
    viewer = form.viewer
    if viewer.merchant_id is None:
        raise PageNotFound
    action = _action(action)
    view = await _view(container, viewer, payment_id)
    key = form.get("idempotency_key").strip()
    amount_text = form.get("amount")[:32]
    db, vault, merchant_id = container.db, container.vault, viewer.merchant_id
    try:
        if not key:
            raise InvalidRequest("Idempotency-Key: the form lacks one; reload it", param="Idempotency-Key")
        amount = dashboard.parse_amount(amount_text, view.payment.currency) if action != "cancel" else None
        if action == "capture":
            result = await dashboard.capture(db, vault, merchant_id, payment_id, amount, key=key)
        elif action == "cancel":
            result = await dashboard.cancel(db, vault, merchant_id, payment_id, key=key)
        else:
            result = await dashboard.refund(db, vault, merchant_id, payment_id, amount, key=key)
    except (TenderError, DomainError) as exc:
        if isinstance(exc, NotFound):
            raise PageNotFound from None
        return _confirm(request, viewer, view, action, amount_text, key=key, error=error_of(exc),
                        status_code=status_of(exc))  # fmt: skip
    if result.status_code >= 400:  # a replay of an earlier failure is shown as that failure
        return _confirm(request, viewer, view, action, amount_text, key=key, error=result.body.get("error"),
                        status_code=result.status_code)  # fmt: skip
    return redirect(f"/dashboard/payments/{payment_id}?done={action}")
