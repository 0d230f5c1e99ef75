"""The dashboard for merchants' staff and operators, under /dashboard (API.md "Dashboard").

Server-rendered (Jinja2), works without JavaScript (forms POST, the server redirects), htmx (vendored in
web/static) only where it helps. Pages call services only; every query is scoped by the session's merchant
(auth.MerchantViewerDep), and another merchant's object is a 404 page. The page modules each hold a router;
`install` mounts them all, with the handlers that turn auth's exceptions into pages.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from tender.web.dashboard import auth, customers, developers, home, money, operator, payments
from tender.web.dashboard.layout import not_found, render
from tender.web.pages import SECURITY_HEADERS

router = APIRouter(prefix="/dashboard", include_in_schema=False)
router.include_router(auth.router)
# The merchant's pages: payments, money, customers and subscriptions, webhooks and API keys.
for _pages in (payments, money, customers, developers):
    router.include_router(_pages.router)
# The operator's pages: merchants, dead letters, processors, ledger, reconciliation (a 404 for merchants' users).
router.include_router(operator.router)


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, auth.SignInRequired)
    login = f"{auth.LOGIN_PATH}?next={_quote(exc.back_to)}"
    if request.headers.get("hx-request") == "true":
        # An htmx refresh (the issues panel) whose session ended: the whole page goes to the sign-in page, and
        # back to the page (not the panel) after it (a 303 would be followed by the XMLHttpRequest and the
        # sign-in form swapped into the panel).
        page = urlsplit(request.headers.get("hx-current-url", "")).path
        login = f"{auth.LOGIN_PATH}?next={_quote(page)}"
        response: Response = Response(status_code=401, headers={**SECURITY_HEADERS, "HX-Redirect": login})
    else:
        response = auth.redirect(login)
    auth.clear_cookie(response, request, auth.SESSION_COOKIE)  # a dead session's cookie is worth nothing
    return response


def _quote(path: str) -> str:
    return quote(auth.safe_next(path), safe="/")


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return render(
        request, "dashboard/message.html", auth.viewer_of(request), status_code=403, title="Refused",
        message="This form expired or did not come from this dashboard: nothing was done. Reload and try again.",
    )  # fmt: skip


async def _merchant_required(request: Request, exc: Exception) -> Response:
    return auth.redirect("/dashboard")


async def _password_change_required(request: Request, exc: Exception) -> Response:
    return auth.redirect(auth.PASSWORD_PATH)


async def _page_not_found(request: Request, exc: Exception) -> Response:
    return not_found(request, auth.viewer_of(request))


async def _no_such_page(request: Request, viewer: auth.ViewerDep) -> Response:
    """Any other GET under /dashboard: the 404 page for the signed-in (the sign-in page for anyone else)."""
    return not_found(request, viewer)


def install(app: FastAPI) -> None:
    """Mount the dashboard on the app (api/app.py), with its exception pages."""
    app.include_router(home.router)
    app.include_router(router)
    # Last: only what no page above took.
    app.add_api_route("/dashboard/{rest:path}", _no_such_page, methods=["GET"], include_in_schema=False)
    handlers: dict[type[HTTPException], object] = {
        auth.SignInRequired: _sign_in_required,
        auth.CsrfRefused: _csrf_refused,
        auth.MerchantRequired: _merchant_required,
        auth.PasswordChangeRequired: _password_change_required,
        auth.PageNotFound: _page_not_found,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)  # type: ignore[arg-type]
