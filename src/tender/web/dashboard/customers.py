"""Customers (the list, with an email filter; one customer with its saved cards, subscriptions, invoices and
payments) and subscriptions (the list, with a status filter)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tender.domain.recurring import SubscriptionStatus
from tender.errors import InvalidRequest, NotFound
from tender.http.deps import ContainerDep
from tender.services import customers as customer_service
from tender.services import dashboard
from tender.services import subscriptions as subscription_service
from tender.web.dashboard.auth import MerchantViewerDep, PageNotFound
from tender.web.dashboard.layout import render
from tender.web.dashboard.money import _cursor
from tender.web.dashboard.payments import error_of

router = APIRouter()
Text = Annotated[str | None, Query()]


@router.get("/customers", response_class=HTMLResponse)
async def customers(
    request: Request, viewer: MerchantViewerDep, container: ContainerDep, email: Text = None,
    starting_after: Text = None,
) -> HTMLResponse:  # fmt: skip
    assert viewer.merchant_id is not None
    email = (email or "").strip()[:254] or None
    page = await customer_service.list_(
        container.db, viewer.merchant_id, limit=dashboard.PAGE_SIZE, starting_after=_cursor(starting_after),
        email=email,
    )  # fmt: skip
    query = f"email={email}&" if email else ""
    next_url = f"/dashboard/customers?{query}starting_after={page.rows[-1].id}" if page.has_more and page.rows else None
    return render(
        request, "dashboard/customers.html", viewer, title="Customers", customers=page.rows, email=email or "",
        next_url=next_url,
    )  # fmt: skip


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer(
    request: Request, customer_id: str, viewer: MerchantViewerDep, container: ContainerDep
) -> HTMLResponse:
    assert viewer.merchant_id is not None
    try:
        view = await dashboard.customer_view(container.db, viewer.merchant_id, customer_id)
    except NotFound:
        raise PageNotFound from None
    return render(
        request, "dashboard/customer.html", viewer, title=f"Customer {customer_id}", view=view, c=view.customer
    )


@router.get("/subscriptions", response_class=HTMLResponse)
async def subscriptions(
    request: Request, viewer: MerchantViewerDep, container: ContainerDep, status: Text = None,
    starting_after: Text = None,
) -> HTMLResponse:  # fmt: skip
    assert viewer.merchant_id is not None
    error = None
    rows, has_more = [], False
    try:
        page = await subscription_service.list_(
            container.db, viewer.merchant_id, limit=dashboard.PAGE_SIZE, starting_after=_cursor(starting_after),
            customer=None, status=status or None,
        )  # fmt: skip
        rows, has_more = page.rows, page.has_more
    except InvalidRequest as exc:
        error = error_of(exc)
    query = f"status={status}&" if status and not error else ""
    next_url = f"/dashboard/subscriptions?{query}starting_after={rows[-1].id}" if has_more and rows else None
    return render(
        request, "dashboard/subscriptions.html", viewer, status_code=400 if error else 200, title="Subscriptions",
        subscriptions=rows, status=status or "", statuses=[s.value for s in SubscriptionStatus], error=error,
        next_url=next_url,
    )  # fmt: skip
