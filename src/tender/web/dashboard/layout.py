"""The dashboard's templates and page frame: the Jinja2 environment, the navigation, and `render`, which
every page answers through (so each sends the same security headers as the checkout page).

Pages extend templates/dashboard/base.html, which draws the skip link, the navigation (merchant sections,
and the operator's when an operator is signed in), who is signed in and the sign-out button.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tender.domain.money import format_amount
from tender.services.dashboard_users import Viewer
from tender.web.pages import SECURITY_HEADERS

TEMPLATES = Path(__file__).parent.parent / "templates"

templates = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True), auto_reload=False
)


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str


# The merchant's sections (every viewer; an operator sees them for the merchant chosen on the home page).
MERCHANT_NAV = (
    NavItem("/dashboard", "Home"),
    NavItem("/dashboard/payments", "Payments"),
    NavItem("/dashboard/balance", "Balance"),
    NavItem("/dashboard/payables", "Payables"),
    NavItem("/dashboard/settlements", "Settlements"),
    NavItem("/dashboard/customers", "Customers"),
    NavItem("/dashboard/subscriptions", "Subscriptions"),
    NavItem("/dashboard/webhooks", "Webhooks"),
    NavItem("/dashboard/api-keys", "API keys"),
)
# The operator's sections (operators only).
OPERATOR_NAV = (
    NavItem("/dashboard/operator/merchants", "Merchants"),
    NavItem("/dashboard/operator/dead-letters", "Dead letters"),
    NavItem("/dashboard/operator/processors", "Processors"),
    NavItem("/dashboard/operator/ledger", "Ledger"),
    NavItem("/dashboard/operator/reconciliations", "Reconciliation"),
)


def money(amount: int, currency: str) -> str:
    return format_amount(amount, currency)


def percent(rate: Decimal | None) -> str:
    """A fraction as a percentage with one decimal ("97.5%"), or an em dash when there is none."""
    if rate is None:
        return "—"
    return f"{(rate * 100).quantize(Decimal('0.1'))}%"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if value is not None else "—"


templates.filters["money"] = lambda amount, currency: money(int(amount), str(currency))
templates.filters["percent"] = percent
templates.filters["when"] = when
templates.globals["MERCHANT_NAV"] = MERCHANT_NAV
templates.globals["OPERATOR_NAV"] = OPERATOR_NAV


def _current_section(path: str) -> str:
    """The nav item a path belongs to (the longest matching prefix), for aria-current."""
    best = ""
    for item in (*MERCHANT_NAV, *OPERATOR_NAV):
        if (path == item.path or path.startswith(item.path + "/")) and len(item.path) > len(best):
            best = item.path
    return best


def render(
    request: Request,
    template: str,
    viewer: Viewer | None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    csrf_token: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """A dashboard page: `template` (under templates/, e.g. "dashboard/home.html") with the viewer, its CSRF
    token (or `csrf_token`, the sign-in form's) and the navigation, sent with the checkout page's security
    headers (strict CSP, no framing, no-store)."""
    html = templates.get_template(template).render(
        viewer=viewer,
        csrf_token=viewer.csrf_token if viewer is not None else (csrf_token or ""),
        current=_current_section(request.url.path),
        nonce=str(uuid.uuid4()),  # for links to a confirmation page: see `confirmation_key`
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})})


def confirmation_key(scope: str, nonce: str | None) -> str | None:
    """The Idempotency-Key of a confirmation page opened from a page's link carrying its `nonce` (`?k=`): the page
    asked again (the browser's Back after confirming, a reload) carries the same nonce and gets the same key, so
    confirming again replays the first outcome instead of acting twice (a second refund, a second roll of the API
    keys); a new visit to the page the link is on is a new nonce, a new action. `scope` names the action and its
    object, as one page's nonce serves all its links. None (a fresh key) without a nonce of ours."""
    try:
        return f"dashboard-{scope}-{uuid.UUID(nonce or '')}"
    except ValueError:
        return None


def not_found(request: Request, viewer: Viewer | None) -> HTMLResponse:
    """The page for an object that does not exist, or is another merchant's (the same answer: a 404)."""
    return render(
        request,
        "dashboard/message.html",
        viewer,
        status_code=404,
        title="Not found",
        message="There is nothing here, or you may not see it.",
    )
