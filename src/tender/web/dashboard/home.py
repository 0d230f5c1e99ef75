"""The dashboard's home: a merchant's day and last 30 days (figures, charts, open issues); for an operator,
the totals across merchants and the merchant picker."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tender.http.deps import ContainerDep
from tender.services import dashboard_home
from tender.services.dashboard_home import Activity
from tender.web.dashboard import charts
from tender.web.dashboard.auth import PassiveMerchantViewerDep, ViewerDep
from tender.web.dashboard.layout import money, render

# Its own prefix (not under the package's router): FastAPI refuses an empty path under an empty prefix, and the
# home page is /dashboard itself.
router = APIRouter(prefix="/dashboard", include_in_schema=False)
MAX_VOLUME_CHARTS = 3


def activity_charts(activity: Activity) -> list[charts.Chart]:
    """Payments per day (all, and approved) as bars; volume per day as a line, one chart per currency."""
    labels = [d.day.strftime("%m-%d") for d in activity.days]
    span = f"{activity.days[0].day.isoformat()} to {activity.days[-1].day.isoformat()}"
    made = [
        charts.bar_chart(
            "payments-per-day",
            "Payments per day",
            f"Payments made each day from {span}: all of them, and those approved. "
            f"{activity.period.count} payments in all, {activity.period.approved} approved.",
            labels,
            [
                charts.Series("All payments", [d.count for d in activity.days]),
                charts.Series("Approved", [d.approved for d in activity.days]),
            ],
        )
    ]
    for currency in activity.currencies[:MAX_VOLUME_CHARTS]:
        values = [d.volume.get(currency, 0) for d in activity.days]
        made.append(
            charts.line_chart(
                f"volume-{currency.lower()}",
                f"Volume per day ({currency})",
                f"Captured amount of succeeded payments in {currency} each day from {span}; "
                f"{money(sum(values), currency)} in all.",
                labels,
                [charts.Series(f"Volume {currency}", values)],
                fmt=lambda v, c=currency: money(v, c),  # type: ignore[misc]
                axis_fmt=lambda v, c=currency: money(v, c).split(" ")[0],  # type: ignore[misc]
            )
        )
    return made


@router.get("", response_class=HTMLResponse)
async def home(request: Request, viewer: ViewerDep, container: ContainerDep) -> HTMLResponse:
    tz = container.settings.business_tz
    if viewer.operator and viewer.merchant_id is None:
        shown = await dashboard_home.operator_home(container.db, tz)
        return render(
            request, "dashboard/operator_home.html", viewer, title="Home", home=shown,
            charts=activity_charts(shown.activity),
        )  # fmt: skip
    assert viewer.merchant_id is not None
    merchant_home = await dashboard_home.merchant_home(container.db, viewer.merchant_id, tz)
    # An operator viewing one merchant can switch to another (or back to the totals) from here.
    merchants = await dashboard_home.merchant_choices(container.db) if viewer.operator else []
    return render(
        request, "dashboard/home.html", viewer, title="Home", home=merchant_home,
        charts=activity_charts(merchant_home.activity), merchants=merchants,
    )  # fmt: skip


@router.get("/issues", response_class=HTMLResponse)
async def issues(request: Request, viewer: PassiveMerchantViewerDep, container: ContainerDep) -> HTMLResponse:
    """The open-issues panel alone: the home page refreshes it with htmx (without JavaScript: reload). The
    refresh does not keep the session alive."""
    assert viewer.merchant_id is not None
    endpoints, letters = await dashboard_home.merchant_issues(container.db, viewer.merchant_id)
    return render(request, "dashboard/_issues.html", viewer, failing_endpoints=endpoints, dead_letters=letters)
