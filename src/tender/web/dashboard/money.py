"""The merchant's money: the balance (pending and available now, and a chart of both over 30 or 90 days),
payables by due date, and settlements (the list and one with its payables)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tender.errors import InvalidRequest, NotFound
from tender.http.deps import ContainerDep
from tender.services import balance as balance_service
from tender.services import dashboard
from tender.web.dashboard import charts
from tender.web.dashboard.auth import MerchantViewerDep, PageNotFound
from tender.web.dashboard.layout import money, render
from tender.web.dashboard.payments import error_of

router = APIRouter()
Text = Annotated[str | None, Query()]
MAX_CURRENCY_CHARTS = 4
_DAYS = "days: must be 30 or 90"


def balance_charts(history: dashboard.BalanceHistory) -> list[charts.Chart]:
    """One line chart per currency: pending and available at the end of each day."""
    made = []
    for currency, points in list(history.series.items())[:MAX_CURRENCY_CHARTS]:
        labels = [p.day.strftime("%m-%d") for p in points]
        span = f"{points[0].day.isoformat()} to {points[-1].day.isoformat()}" if points else ""
        last = points[-1] if points else None
        description = (
            f"Your {currency} balance at the end of each day from {span}: pending (waiting for funds) and"
            f" available. Today: {money(last.pending, currency)} pending, {money(last.available, currency)}"
            " available."
            if last
            else ""
        )
        made.append(
            charts.line_chart(
                f"balance-{currency.lower()}",
                f"Balance over {history.days} days ({currency})",
                description,
                labels,
                [
                    charts.Series("Pending", [p.pending for p in points]),
                    charts.Series("Available", [p.available for p in points]),
                ],
                fmt=lambda v, c=currency: money(v, c),  # type: ignore[misc]
            )
        )
    return made


@router.get("/balance", response_class=HTMLResponse)
async def balance(
    request: Request, viewer: MerchantViewerDep, container: ContainerDep, days: Text = None
) -> HTMLResponse:
    assert viewer.merchant_id is not None
    tz = container.settings.business_tz
    window = int(days) if days in ("30", "90") else 30
    history = await dashboard.balance_history(
        container.db, viewer.merchant_id, days=window, tz=tz, today=datetime.now(tz).date()
    )
    return render(
        request, "dashboard/money_balance.html", viewer, title="Balance", history=history,
        charts=balance_charts(history), windows=dashboard.CHART_WINDOWS,
        error=None if days in (None, "", "30", "90") else error_of(InvalidRequest(_DAYS, param="days")),
    )  # fmt: skip


@router.get("/payables", response_class=HTMLResponse)
async def payables(
    request: Request, viewer: MerchantViewerDep, container: ContainerDep, starting_after: Text = None
) -> HTMLResponse:
    assert viewer.merchant_id is not None
    due = await dashboard.payables_by_due_date(container.db, viewer.merchant_id)
    page = await balance_service.list_payables(
        container.db, viewer.merchant_id, limit=dashboard.PAGE_SIZE, starting_after=_cursor(starting_after)
    )
    next_url = f"/dashboard/payables?starting_after={page.rows[-1].id}" if page.has_more and page.rows else None
    return render(
        request, "dashboard/money_payables.html", viewer, title="Payables", due=due, payables=page.rows,
        next_url=next_url,
    )  # fmt: skip


@router.get("/settlements", response_class=HTMLResponse)
async def settlements(
    request: Request, viewer: MerchantViewerDep, container: ContainerDep, starting_after: Text = None
) -> HTMLResponse:
    assert viewer.merchant_id is not None
    page = await balance_service.list_settlements(
        container.db, viewer.merchant_id, limit=dashboard.PAGE_SIZE, starting_after=_cursor(starting_after)
    )
    next_url = f"/dashboard/settlements?starting_after={page.rows[-1].id}" if page.has_more and page.rows else None
    return render(
        request, "dashboard/money_settlements.html", viewer, title="Settlements", settlements=page.rows,
        next_url=next_url,
    )  # fmt: skip


@router.get("/settlements/{settlement_id}", response_class=HTMLResponse)
async def settlement(
    request: Request, settlement_id: str, viewer: MerchantViewerDep, container: ContainerDep
) -> HTMLResponse:
    assert viewer.merchant_id is not None
    try:
        view = await dashboard.settlement_view(container.db, viewer.merchant_id, settlement_id)
    except NotFound:
        raise PageNotFound from None
    return render(
        request, "dashboard/money_settlement.html", viewer, title=f"Settlement {settlement_id}", s=view.settlement,
        payables=view.payables,
    )  # fmt: skip


def _cursor(value: str | None) -> str | None:
    """A cursor is an id: anything longer than one is no cursor (the first page)."""
    return value if value and len(value) <= 64 and "\x00" not in value else None
