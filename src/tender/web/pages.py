"""The hosted checkout page: /checkout/{session id}.

One URL shows whatever the session needs now: the card form (again after a decline), the "payment
processing" view, the way to 3-D Secure, or the way back to the shop. A card decline is never explained to
the shopper (a card tester would learn which cards are lost, or which CVC was wrong): the merchant gets the
precise decline_code through the API and events. Card payments are held to the velocity limits per card,
session and the shopper's address (services/velocity.py). The card form works
without JavaScript (a plain POST, checked on the server); the processing view updates from an SSE stream
and falls back to polling, or, without JavaScript, refreshes itself. The session id in the URL is what
authorizes the page: it is unguessable, and the card number goes only to Tender.

Every page forbids framing, caching and any script, style or connection that is not Tender's own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tender.bootstrap import Container
from tender.domain.errors import ValidationFailed
from tender.domain.models import CheckoutSession, CheckoutStatus, Payment
from tender.domain.money import format_amount
from tender.domain.payments import PaymentStatus
from tender.errors import InvalidRequest, RateLimited
from tender.http.deps import ContainerDep, HubDep
from tender.http.sse import EventStream, status_stream
from tender.services import checkout_page as page_service
from tender.services import velocity
from tender.services.checkout_page import SessionView
from tender.services.validation import NUL, nul_error

router = APIRouter(include_in_schema=False)
STATIC_DIR = Path(__file__).parent / "static"
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(), auto_reload=False
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
CARD_FIELDS = ("number", "expiry", "cvc", "holder_name")
# Where a redirect method sends the shopper, in the page's words (a card's 3-D Secure: "your bank").
_PROVIDERS = {"wallet": "your wallet", "netbanking": "your bank", "bnpl": "the pay-later provider"}
_TRY_AGAIN = "Please try again, or choose another way to pay."
GENERIC_DECLINE = "Your card was declined. Try another card."
METHOD_NAMES = {
    "upi": "Pay with UPI",
    "wallet": "Pay with a wallet",
    "netbanking": "Pay by net banking",
    "bnpl": "Buy now, pay later",
}
MAX_FORM_BYTES = 4096


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _context(shown: SessionView) -> dict[str, Any]:
    row = shown.session
    amount = format_amount(row.amount, row.currency.strip())
    return {
        "session_id": row.id,
        "merchant_name": shown.merchant_name or "the shop",
        "description": row.description,
        "amount": amount,
        "values": {"expiry": "", "holder_name": "", "vpa": ""},
        "method_types": list(row.payment_method_types),
        "method_names": METHOD_NAMES,
        **_subscription_terms(row, amount),
    }


def _subscription_terms(row: CheckoutSession, amount: str) -> dict[str, Any]:
    """A subscription session's page: the price per period, the trial, and a Subscribe button."""
    plan = row.subscription_data if row.mode == "subscription" else None
    if not plan:
        return {}
    count, unit = int(plan.get("interval_count", 1)), str(plan.get("interval", "month"))
    every = f"{unit}" if count == 1 else f"{count} {unit}s"
    trial = int(plan.get("trial_days", 0))
    return {
        "amount": f"{amount} / {every}",
        "terms": (f"{trial} days free, then " if trial else "") + f"{amount} every {every}, until you cancel.",
        "pay_label": "Start trial" if trial else "Subscribe",
    }


def _back_to_shop(ctx: dict[str, Any], row: CheckoutSession) -> HTMLResponse:
    target = with_query(row.success_url, session_id=row.id, status="succeeded")
    return _page(
        "redirect.html",
        kind="succeeded",
        delay=1,
        target=target,
        heading="Subscription started" if row.mode == "subscription" else "Payment successful",
        message=f"Thank you. Taking you back to {ctx['merchant_name']}…",
        link_text=f"Return to {ctx['merchant_name']}",
        **ctx,
    )


@router.get("/checkout/{session_id}")
async def checkout_page(session_id: str, container: ContainerDep, returned: str | None = None) -> Response:
    """`?returned=1`: the shopper is back from 3-D Secure or a provider's page (the payment's return_url)."""
    shown = await page_service.view(container.db, session_id, payment=True, merchant=True)
    if shown is None:
        return _not_found()
    ctx = _context(shown)
    row, payment = shown.session, shown.payment
    if returned and payment is not None and payment.status is PaymentStatus.REQUIRES_ACTION:
        # Back before the outcome reached us: wait here (sending them to the bank's page again would strand
        # them on an already decided challenge), and have the processor asked at once, but not once per reload
        # (at most once per interval per payment; beyond it the page just shows the current state).
        interval = container.settings.checkout_lookup_interval_seconds
        await velocity.look_up_on_return(container.db, payment.id, interval_seconds=interval)
        url = (payment.next_action or {}).get("url")
        return _page("processing.html", payment_status="requires_action", back_url=url, **ctx)
    return _render(ctx, row, payment)


def _render(ctx: dict[str, Any], row: CheckoutSession, payment: Payment | None) -> HTMLResponse:
    """What the session needs now: the way back to the shop, the expiry notice, the processing view, the
    hand-off to the bank or provider, or the form (with the last payment's failure)."""
    if row.status is CheckoutStatus.COMPLETE or (payment is not None and payment.status is PaymentStatus.SUCCEEDED):
        return _back_to_shop(ctx, row)
    if row.status is CheckoutStatus.EXPIRED:
        return _page(
            "closed.html",
            status_code=410,
            kind="expired",
            heading="This checkout has expired",
            message="Nothing was charged. Return to the shop to start again.",
            target=row.cancel_url,
            **ctx,
        )
    if payment is not None and payment.status is PaymentStatus.PROCESSING:
        return _page("processing.html", payment_status="processing", **ctx)
    waiting = payment is not None and payment.status is PaymentStatus.REQUIRES_ACTION
    if payment is not None and waiting and payment.payment_method.get("type") == "upi":
        # A collect request: the shopper approves in their UPI app (the simulator's page stands in for it).
        url = (payment.next_action or {}).get("url")
        return _page("processing.html", payment_status="requires_action", upi_app_url=url, **ctx)
    if payment is not None and waiting and payment.next_action:
        where = _PROVIDERS.get(str(payment.payment_method.get("type")), "your bank")
        return _page(
            "redirect.html",
            kind="authenticate",
            delay=0,
            target=payment.next_action["url"],
            heading=f"Confirm the payment with {where}",
            message=f"Taking you to {where}…",
            link_text=f"Continue to {where}",
            **ctx,
        )
    error = None
    if payment is not None and payment.status is PaymentStatus.FAILED:
        if payment.payment_method.get("type") == "card":
            error = GENERIC_DECLINE  # whatever the reason (API.md "Security limits")
        else:  # an alternative method's failure says nothing about a card
            error = f"{payment.failure_message or 'The payment failed.'} {_TRY_AGAIN}"
    if payment is not None and payment.status is PaymentStatus.CANCELED:
        error = "The payment was canceled. You may pay again."
    return _page("form.html", error=error, **ctx)


@router.post("/checkout/{session_id}/pay")
async def pay(session_id: str, request: Request, container: ContainerDep) -> Response:
    """The card form's POST. Errors re-render the form (400) naming the field; the card number and CVC
    are never sent back, not even into the form."""
    raw = await request.body()
    fields = {k: v[0] for k, v in parse_qs(raw[:MAX_FORM_BYTES].decode(errors="replace")).items() if k in CARD_FIELDS}
    values = {k: fields.get(k, "").replace(NUL, "")[:n] for k, n in (("expiry", 7), ("holder_name", 100))}
    values["vpa"] = ""
    shown = await page_service.view(container.db, session_id, merchant=True)
    if shown is None:
        return _not_found()
    ctx = _context(shown)
    try:
        guard = _guard(request, container, shown.session.merchant_id)
        closed = await page_service.pay(
            container.db,
            container.vault,
            session_id,
            {"type": "card", "card": _card(fields)},
            processor=container.default_processor,
            max_payments=container.settings.checkout_max_payments,
            available=container.processors.keys(),
            guard=guard,
            tz=container.settings.business_tz,
        )
        if closed is not None:  # paid or expired meanwhile: show what it is now
            return _render(ctx, closed.session, closed.payment)
    except RateLimited as exc:  # raised before anything was written
        minutes = math.ceil(exc.retry_after / 60)
        wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
        page = _page(
            "form.html",
            status_code=429,
            error=f"Too many declined payments. Please try again in {wait}, or contact the shop.",
            **{**ctx, "values": values},
        )
        page.headers.update(exc.headers())
        return page
    except (InvalidRequest, ValidationFailed) as exc:  # raised before or inside the transaction: nothing written
        text = exc.message if isinstance(exc, InvalidRequest) else str(exc)
        message = _for_shopper(text, exc.param)
        return _page(
            "form.html",
            status_code=400,
            error=message,
            field=_form_field(exc.param),
            **{**ctx, "values": values},
        )
    return RedirectResponse(f"/checkout/{session_id}", status_code=303, headers=SECURITY_HEADERS)


_HUMAN_NAMES = {
    "payment_method.card.number": "The card number",
    "payment_method.card.exp_month": "The expiry month",
    "payment_method.card.exp_year": "The expiry year",
    "payment_method.card.expiry": "The expiry date",
    "payment_method.card.cvc": "The security code (CVC)",
    "payment_method.card.holder_name": "The name on the card",
}


def _for_shopper(message: str, param: str | None) -> str:
    """An API message for the form: the field's name instead of the API's parameter path."""
    if param in _HUMAN_NAMES:
        message = message.replace(param, _HUMAN_NAMES[param])
    return message[:1].upper() + message[1:]


@router.post("/checkout/{session_id}/pay_method")
async def pay_method(session_id: str, request: Request, container: ContainerDep) -> Response:
    """One of the other methods' buttons: a redirect method goes to its provider's page (via the processing
    view), UPI sends a collect request to the VPA entered."""
    raw = await request.body()
    fields = {k: v[0] for k, v in parse_qs(raw[:MAX_FORM_BYTES].decode(errors="replace")).items()}
    kind = fields.get("type", "")
    method: dict[str, Any] = {"type": kind}
    if kind == "upi":
        method["upi"] = {"vpa": fields.get("vpa", "")[:255]}
    shown = await page_service.view(container.db, session_id, merchant=True)
    if shown is None:
        return _not_found()
    ctx = _context(shown)
    try:
        for name, param in (("type", "payment_method.type"), ("vpa", "payment_method.upi.vpa")):
            if NUL in fields.get(name, ""):
                raise nul_error(param)
        closed = await page_service.pay(
            container.db,
            container.vault,
            session_id,
            method,
            processor=container.default_processor,
            max_payments=container.settings.checkout_max_payments,
            available=container.processors.keys(),
        )
        if closed is not None:
            return _render(ctx, closed.session, closed.payment)
    except (InvalidRequest, ValidationFailed) as exc:
        text = exc.message if isinstance(exc, InvalidRequest) else str(exc)
        vpa = exc.param is not None and exc.param.endswith("vpa")
        message = "Enter your UPI ID as name@bank." if vpa else text
        return _page(
            "form.html",
            status_code=400,
            error=message,
            field="vpa" if vpa else None,
            **{**ctx, "values": {**ctx.get("values", {}), "vpa": fields.get("vpa", "").replace(NUL, "")[:100]}},
        )
    return RedirectResponse(f"/checkout/{session_id}", status_code=303, headers=SECURITY_HEADERS)


def _guard(request: Request, container: Container, merchant_id: str) -> velocity.Guard:
    """The velocity limits of a card payment from this page: per card, session and the shopper's address (the
    connection's, or from X-Forwarded-For when the connection is a trusted proxy), kept only as a keyed hash."""
    settings = container.settings
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    address = velocity.client_address(peer, forwarded, settings.trusted_proxy_networks)
    address_hash = velocity.address_hash(container.vault, merchant_id, address)
    return velocity.Guard(velocity.Limits.from_settings(settings), address_hash=address_hash)


def _card(fields: dict[str, str]) -> dict[str, Any]:
    for name, value in fields.items():  # PostgreSQL stores no NUL: refuse it here, naming the field
        if NUL in value:
            raise nul_error(f"payment_method.card.{name}")
    expiry = fields.get("expiry", "").replace(" ", "")
    month, _, year = expiry.partition("/")
    # ASCII digits only: str.isdigit() also takes "²" and "٣", which int() then refuses or reads.
    if not (_digits(month) and _digits(year) and len(year) in (2, 4)):
        raise InvalidRequest("expiry: enter the expiry date as MM/YY", param="payment_method.card.expiry")
    return {
        "number": "".join(fields.get("number", "").split())[:30],
        "exp_month": int(month),
        "exp_year": int(year) + (2000 if len(year) == 2 else 0),
        "cvc": fields.get("cvc", "").strip()[:8],
        "holder_name": fields.get("holder_name", "").strip()[:100] or None,
    }


def _digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _form_field(param: str | None) -> str | None:
    """The form's input for an API parameter such as `payment_method.card.exp_year`."""
    name = (param or "").removeprefix("payment_method.card.")
    name = "expiry" if name in ("exp_month", "exp_year") else name
    return name if name in CARD_FIELDS else None


def _not_found() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>Not found</title><p>No such checkout.</p>", status_code=404, headers=SECURITY_HEADERS
    )


@router.get("/checkout/{session_id}/cancel")
async def cancel(session_id: str, container: ContainerDep) -> Response:
    """Back to the shop's cancel_url; the session stays open (the shopper may come back) until it expires."""
    shown = await page_service.view(container.db, session_id)
    if shown is None:
        return _not_found()
    return RedirectResponse(shown.session.cancel_url, status_code=303, headers=SECURITY_HEADERS)


@router.get("/checkout/{session_id}/status")
async def status(session_id: str, container: ContainerDep) -> Response:
    """For the processing view's polling: the session's and its payment's status, nothing more."""
    shown = await page_service.view(container.db, session_id, payment=True)
    if shown is None:
        return Response(b'{"error": "not found"}', status_code=404, media_type="application/json")
    payment = shown.payment
    body = {"status": shown.session.status, "payment_status": payment.status if payment else None}
    return Response(orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"})


def _status_event(payment: Payment, n: int) -> bytes:
    return b"id: %d\nevent: status\ndata: %s\n\n" % (n, orjson.dumps({"status": payment.status}))


@router.get("/checkout/{session_id}/events")
async def events(session_id: str, container: ContainerDep, hub: HubDep) -> Response:
    """The processing view's live status: `status` events carrying only the payment's status."""
    shown = await page_service.view(container.db, session_id)
    row = shown.session if shown else None
    if row is None or row.payment_id is None:
        return Response(b'{"error": "not found"}', status_code=404, media_type="application/json")
    stream = status_stream(container.db, hub, row.merchant_id, row.payment_id, render=_status_event)
    return EventStream(stream, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/demo/shop")
async def demo_shop(request: Request) -> Response:
    """Where `tender demo checkout` sends the shopper back: a stand-in for the merchant's own site."""
    params = request.query_params
    if params.get("canceled"):
        heading, message = "Checkout canceled", "You left the checkout; nothing was charged."
    else:
        heading = "Back at the demo shop"
        message = f"Checkout session {params.get('session_id', '?')[:64]}: {params.get('status', '?')[:20]}."
    return _page("closed.html", kind="demo-shop", heading=heading, message=message, target=None,
                 merchant_name="Demo shop", description=None, amount="")  # fmt: skip
