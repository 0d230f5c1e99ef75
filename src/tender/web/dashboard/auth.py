"""Sign-in, sign-out, sessions and CSRF for the dashboard, and the dependencies every page uses:

- `ViewerDep`: the signed-in viewer (a merchant's user, or an operator); anyone else is sent to the sign-in
  page (303), and nothing of the page is computed.
- `MerchantViewerDep`: the same, with a merchant to view (an operator who has chosen none is sent home to
  choose); `viewer.merchant_id` then scopes every query of the page.
- `FormDep`: a POSTed form whose `csrf_token` matches the session's (else a 403 page, nothing done).

The session cookie is HttpOnly, SameSite=Strict, Path=/dashboard, and Secure when the request came over
https. A new token is made at every sign-in (the old session, if any, is ended). The sign-in form, shown
before any session exists, carries a token of its own that must equal a cookie set with the form (double
submit); SameSite=Strict keeps another site's form from sending either.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from tender.errors import NotFound
from tender.http.deps import ContainerDep
from tender.services import dashboard_users as users
from tender.services import velocity
from tender.services.dashboard_users import Viewer
from tender.services.validation import NUL
from tender.web.dashboard.layout import render
from tender.web.pages import SECURITY_HEADERS

router = APIRouter()

SESSION_COOKIE = "tender_session"
LOGIN_COOKIE = "tender_login"
COOKIE_PATH = "/dashboard"
LOGIN_PATH = "/dashboard/login"
PASSWORD_PATH = "/dashboard/account/password"  # noqa: S105 (a path, not a password)
MAX_FORM_BYTES = 8192
MAX_FIELD = 1000


class SignInRequired(HTTPException):
    """No live session: the browser is sent to the sign-in page, then back."""

    def __init__(self, back_to: str) -> None:
        super().__init__(303)
        self.back_to = back_to


class CsrfRefused(HTTPException):
    def __init__(self) -> None:
        super().__init__(403)


class MerchantRequired(HTTPException):
    """An operator on a merchant's page without a merchant chosen: home, to choose one."""

    def __init__(self) -> None:
        super().__init__(303)


class PasswordChangeRequired(HTTPException):
    """A user signed in with the password Tender printed: their own first, then the page."""

    def __init__(self) -> None:
        super().__init__(303)


class PageNotFound(HTTPException):
    """Nothing here, or another merchant's: raise it from a page (or let NotFound from a service become it)."""

    def __init__(self) -> None:
        super().__init__(404)


def secure(request: Request) -> bool:
    """Cookies are Secure when this request came over https, or Tender's public URL is https (a proxy in front
    that ends TLS but does not say so)."""
    public = request.app.state.container.settings.public_url or ""
    return request.url.scheme == "https" or str(public).startswith("https://")


def set_cookie(response: Response, request: Request, name: str, value: str, path: str = COOKIE_PATH) -> None:
    response.set_cookie(name, value, path=path, httponly=True, samesite="strict", secure=secure(request))


def clear_cookie(response: Response, request: Request, name: str, path: str = COOKIE_PATH) -> None:
    response.delete_cookie(name, path=path, httponly=True, samesite="strict", secure=secure(request))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site, nor `//host`)."""
    if value and value.startswith("/dashboard") and "//" not in value and "\\" not in value and len(value) < 500:
        return value
    return "/dashboard"


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (first value each), at most MAX_FORM_BYTES read, NUL removed."""
    raw = await request.body()
    parsed = parse_qs(raw[:MAX_FORM_BYTES].decode(errors="replace"), keep_blank_values=True)
    return {k[:100]: v[0].replace(NUL, "")[:MAX_FIELD] for k, v in parsed.items()}


async def _viewer(request: Request, container: ContainerDep, *, touch: bool) -> Viewer:
    token = request.cookies.get(SESSION_COOKIE, "")
    limits = users.Limits.from_settings(container.settings)
    viewer = await users.current(container.db, token, limits, touch=touch) if token else None
    if viewer is None:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(back if request.method == "GET" else "/dashboard")
    request.state.dashboard_viewer = viewer  # for the error pages' navigation
    if viewer.must_change_password and request.url.path not in (PASSWORD_PATH, "/dashboard/logout"):
        raise PasswordChangeRequired
    return viewer


async def current_viewer(request: Request, container: ContainerDep) -> Viewer:
    return await _viewer(request, container, touch=True)


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


async def merchant_viewer(viewer: ViewerDep) -> Viewer:
    if viewer.merchant_id is None:
        raise MerchantRequired
    return viewer


MerchantViewerDep = Annotated[Viewer, Depends(merchant_viewer)]


async def passive_merchant_viewer(request: Request, container: ContainerDep) -> Viewer:
    """For a page's automatic refresh (htmx polling): the session is checked but not kept alive, so a tab
    left open still times out after the idle timeout."""
    viewer = await _viewer(request, container, touch=False)
    if viewer.merchant_id is None:
        raise MerchantRequired
    return viewer


PassiveMerchantViewerDep = Annotated[Viewer, Depends(passive_merchant_viewer)]


def viewer_of(request: Request) -> Viewer | None:
    """The viewer a dependency found for this request, if any (error pages show the navigation with it)."""
    viewer = getattr(request.state, "dashboard_viewer", None)
    return viewer if isinstance(viewer, Viewer) else None


@dataclass(frozen=True, slots=True)
class PostedForm:
    viewer: Viewer
    fields: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)


async def checked_form(request: Request, viewer: ViewerDep) -> PostedForm:
    fields = await read_form(request)
    if not hmac.compare_digest(fields.get("csrf_token", "").encode(), viewer.csrf_token.encode()):
        raise CsrfRefused
    return PostedForm(viewer, fields)


FormDep = Annotated[PostedForm, Depends(checked_form)]


def _address(request: Request, container: ContainerDep) -> str:
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return velocity.normalize_address(
        velocity.client_address(peer, forwarded, container.settings.trusted_proxy_networks)
    )


def _login_page(
    request: Request, *, status_code: int = 200, error: str | None = None, email: str = "",
    next_url: str = "/dashboard", operator_enabled: bool = True, headers: dict[str, str] | None = None,
) -> HTMLResponse:  # fmt: skip
    token = request.cookies.get(LOGIN_COOKIE, "")
    fresh = len(token) < 32 or len(token) > 64
    if fresh:
        token = secrets.token_urlsafe(32)
    response = render(
        request,
        "dashboard/login.html",
        None,
        status_code=status_code,
        headers=headers,
        csrf_token=token,
        error=error,
        email=email,
        next_url=next_url,
        operator_enabled=operator_enabled,
    )
    if fresh:
        set_cookie(response, request, LOGIN_COOKIE, token, path=LOGIN_PATH)
    return response


@router.get("/login")
async def login_form(request: Request, container: ContainerDep, next: str | None = None) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    limits = users.Limits.from_settings(container.settings)
    if token and await users.current(container.db, token, limits) is not None:
        return redirect(safe_next(next))
    return _login_page(request, next_url=safe_next(next), operator_enabled=container.settings.admin_key is not None)


def _login_csrf_ok(request: Request, fields: dict[str, str]) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(fields.get("csrf_token", "").encode(), cookie.encode())


async def _signed_in(request: Request, signed: users.SignedIn, next_url: str) -> Response:
    response = redirect(next_url)
    set_cookie(response, request, SESSION_COOKIE, signed.token)
    clear_cookie(response, request, LOGIN_COOKIE, path=LOGIN_PATH)
    return response


@router.post("/login")
async def login(request: Request, container: ContainerDep) -> Response:
    """Email and password, or (`admin_key`) the operator's sign-in."""
    fields = await read_form(request)
    next_url = safe_next(fields.get("next"))
    operator_enabled = container.settings.admin_key is not None
    if not _login_csrf_ok(request, fields):
        return _login_page(request, status_code=403, next_url=next_url, operator_enabled=operator_enabled,
                           error="The form expired. Please sign in again.")  # fmt: skip
    limits = users.Limits.from_settings(container.settings)
    address = _address(request, container)
    previous = request.cookies.get(SESSION_COOKIE) or None
    email = fields.get("email", "").strip()
    try:
        if "admin_key" in fields:
            signed = await users.operator_sign_in(
                container.db, container.vault, limits, admin_key=container.settings.admin_key,
                key=fields["admin_key"], address=address, previous_token=previous,
            )  # fmt: skip
        else:
            signed = await users.sign_in(
                container.db, container.vault, limits, email=email, password=fields.get("password", ""),
                address=address, previous_token=previous,
            )  # fmt: skip
    except users.SignInThrottled as exc:
        return _login_page(
            request, status_code=429, email=email[:254], next_url=next_url, operator_enabled=operator_enabled,
            headers={"Retry-After": str(exc.retry_after)},
            error=f"Too many failed sign-ins. Try again in {_minutes(exc.retry_after)}.",
        )  # fmt: skip
    except users.SignInFailed:
        wrong = "The admin key is wrong." if "admin_key" in fields else "The email or password is wrong."
        return _login_page(request, status_code=401, email=email[:254], next_url=next_url,
                           operator_enabled=operator_enabled, error=wrong)  # fmt: skip
    return await _signed_in(request, signed, next_url)


def _minutes(seconds: int) -> str:
    minutes = (seconds + 59) // 60
    return "a minute" if minutes <= 1 else f"{minutes} minutes"


@router.post("/logout")
async def logout(request: Request, form: FormDep, container: ContainerDep) -> Response:
    await users.sign_out(container.db, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect(LOGIN_PATH)
    clear_cookie(response, request, SESSION_COOKIE)
    return response


@router.post("/merchant")
async def choose_merchant(form: FormDep, container: ContainerDep) -> Response:
    """An operator picks the merchant whose pages they see (an empty choice: none)."""
    if not form.viewer.operator:
        raise PageNotFound
    merchant_id = form.get("merchant").strip() or None
    try:
        await users.choose_merchant(container.db, form.viewer, merchant_id)
    except NotFound:
        raise PageNotFound from None
    return redirect("/dashboard")


def _password_page(
    request: Request, viewer: Viewer, *, status_code: int = 200, error: str | None = None, param: str | None = None,
    done: bool = False,
) -> HTMLResponse:  # fmt: skip
    return render(
        request, "dashboard/password.html", viewer, status_code=status_code, title="Change your password",
        error=error, param=param, done=done,
    )  # fmt: skip


@router.get("/account/password")
async def password_form(request: Request, viewer: ViewerDep) -> Response:
    if viewer.operator:
        raise PageNotFound
    return _password_page(request, viewer)


@router.post("/account/password")
async def change_password(request: Request, form: FormDep, container: ContainerDep) -> Response:
    """The user's own password (required first after signing in with a printed one-time password). The
    user's other sessions end; this one goes on."""
    viewer = form.viewer
    if viewer.operator:
        raise PageNotFound
    try:
        await users.change_password(
            container.db, viewer, form.get("current_password"), form.get("new_password"), form.get("confirm")
        )
    except users.PasswordRefused as exc:
        return _password_page(request, viewer, status_code=400, error=exc.message, param=exc.param)
    if viewer.must_change_password:
        return redirect("/dashboard")
    return _password_page(request, viewer, done=True)
