"""The shopper-facing pages (3-D Secure challenge, APM approval): deliberately plain HTML that works
without JavaScript (a form per decision, real buttons, so keyboards and screen readers just work), every
value escaped."""

from __future__ import annotations

from html import escape

from tender.simulator import apm
from tender.simulator.store import AuthorizationRecord

# Minor-unit exponents that differ from 2, for display only (amounts stay integers everywhere else).
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def format_amount(amount: int, currency: str) -> str:
    exponent = _EXPONENTS.get(currency, 2)
    if exponent == 0:
        return f"{amount} {currency}"
    whole, frac = divmod(amount, 10**exponent)
    return f"{whole}.{frac:0{exponent}d} {currency}"


def _page(title: str, body: str, *, refresh_seconds: int | None = None) -> str:
    # A meta refresh, not a script, keeps a waiting page current (the UPI collect request).
    refresh = f'<meta http-equiv="refresh" content="{refresh_seconds}">' if refresh_seconds else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{refresh}<title>{escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
        "button{font-size:1rem;padding:.6rem 1.2rem;margin-right:.5rem}</style>"
        f"</head><body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )


def challenge_page(auth: AuthorizationRecord) -> str:
    action = f"/3ds/{escape(auth.id)}"
    summary = (
        f'<p>Confirm a payment of <strong id="amount">{escape(format_amount(auth.amount, auth.currency))}'
        f"</strong> with your {escape(auth.card_brand)} card ending in {escape(auth.card_last4)}.</p>"
    )
    if auth.status != "action_required":
        return _page("3-D Secure challenge", summary + done_fragment(auth))
    buttons = "".join(
        f'<form method="post" action="{action}" style="display:inline">'
        f'<input type="hidden" name="decision" value="{value}">'
        f'<button type="submit" id="{value}">{label}</button></form>'
        for value, label in (("approve", "Approve"), ("decline", "Decline"))
    )
    return _page("3-D Secure challenge", summary + "<p>This is a simulated issuer page.</p>" + buttons)


def done_fragment(auth: AuthorizationRecord) -> str:
    return f'<p id="status">This authorization is <strong>{escape(auth.status)}</strong>.</p>'


def done_page(auth: AuthorizationRecord) -> str:
    return _page("3-D Secure challenge complete", done_fragment(auth) + "<p>You may close this page.</p>")


def not_found_page(what: str = "3-D Secure challenge") -> str:
    return _page("Not found", f"<p>There is no such {escape(what)}.</p>")


def _decision_buttons(action: str) -> str:
    return "".join(
        f'<form method="post" action="{action}" style="display:inline">'
        f'<input type="hidden" name="decision" value="{value}">'
        f'<button type="submit" id="{value}" aria-describedby="summary">{label}</button></form>'
        for value, label in (("approve", "Approve"), ("decline", "Decline"))
    )


def apm_title(auth: AuthorizationRecord) -> str:
    if auth.method == "upi":
        return "UPI collect request"
    return f"{apm.provider_name(auth.method, auth.method_details or {})}: approve payment"


def apm_page(auth: AuthorizationRecord, *, automatic: bool, refresh_seconds: int = 2) -> str:
    """The provider's approval page. For UPI it plays the shopper's UPI app; a test address that decides on
    its own (`automatic`) shows no buttons and refreshes itself until it has."""
    amount = escape(format_amount(auth.amount, auth.currency))
    details = auth.method_details or {}
    if auth.method == "upi":
        summary = (
            f'<p id="summary">A collect request for <strong id="amount">{amount}</strong> is waiting for'
            f' <strong id="vpa">{escape(details.get("vpa") or "")}</strong> to approve it.</p>'
        )
    else:
        provider, kind = apm.provider_name(auth.method, details), apm.NAMES[auth.method]
        via = escape(provider if provider == kind else f"{provider} ({kind})")
        summary = f'<p id="summary">Pay <strong id="amount">{amount}</strong> with {via}.</p>'
    title = apm_title(auth)
    if auth.status != "action_required":
        back = ""
        if auth.return_url:
            back = f'<p><a id="return" href="{escape(auth.return_url)}">Return to the shop</a></p>'
        return _page(title, summary + done_fragment(auth) + back)
    if automatic:
        note = (
            '<p id="status" role="status">This test address answers on its own in a moment;'
            " this page refreshes until it has.</p>"
        )
        return _page(title, summary + note, refresh_seconds=refresh_seconds)
    body = summary + "<p>This is a simulated provider page.</p>" + _decision_buttons(f"/apm/{escape(auth.id)}")
    return _page(title, body)


def apm_done_page(auth: AuthorizationRecord) -> str:
    return _page(apm_title(auth) + ": complete", done_fragment(auth) + "<p>You may close this page.</p>")
