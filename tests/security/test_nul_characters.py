"""Finding 4: "A NUL character anywhere (path, query, JSON strings, form fields, /checkout/cs_%00) gives a 500
and logs request data in PostgreSQL's error context": now a 400 naming the field, on every route."""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from tender.api import errors
from tender.api.app import create_app
from tender.errors import InvalidRequest
from tests.support.api import auth, card_payment
from tests.support.checkout import FORM, card_form, new_session, page_path

pytestmark = pytest.mark.integration

# Routes that never read a request body (besides GET and DELETE): a NUL in one cannot matter to them.
NO_BODY = {
    ("POST", "/admin/v1/dead_letters/{dead_letter_id}/retry"),
}
# Read raw and verified by signature before anything else: an unsigned body is a 400 `invalid_signature`.
# (/webhooks/stripe without TENDER_STRIPE_WEBHOOK_SECRET, as here, refuses before reading it; a signed Stripe
# event holding a NUL: tests/integration/test_stripe_webhooks.py)
SIGNED = {("POST", "/webhooks/{processor}"), ("POST", "/webhooks/stripe")}


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[APIRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's view of an included router
        if included is not None:
            # include_router(..., prefix=) (the dashboard's pages under /dashboard): the routes' paths lack it.
            context = getattr(route, "include_context", None)
            yield from _walk(included.routes, prefix + (context.prefix if context is not None else ""))
        elif isinstance(route, APIRoute):
            if prefix:
                route = copy.copy(route)
                route.path = prefix + route.path
            yield route


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    pairs = [(method, route) for route in _walk(app.routes) for method in route.methods - {"HEAD"}]
    return sorted(pairs, key=lambda p: (p[1].path, p[0]))


@pytest.fixture
async def raw_api(container: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A client that returns a 500 as a response instead of raising the app's exception (as a server does)."""
    app = create_app(container)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tender.test") as client:
        yield app, client


def _headers_for(path: str, merchant: Any, settings: Any) -> dict[str, str]:
    if path.startswith("/admin/"):
        return auth(settings.admin_key.get_secret_value())
    return auth(merchant.secret_key)


def _fill(path: str, value: str, merchant: Any = None) -> str:
    """Path parameters set to `value`; with `merchant`, real ones where a route checks before reading."""
    if merchant is not None:
        path = path.replace("{processor}", "simulator").replace("{merchant_id}", merchant.merchant.id)
    return re.sub(r"\{[^}]+\}", value, path)


def _problem(method: str, path: str, r: httpx.Response, param: str | None) -> str | None:
    if r.status_code != 400:
        return f"{method} {path}: {r.status_code} {r.text[:200]}"
    if param is not None and r.json()["error"].get("param") != param:
        return f"{method} {path}: param {r.json()['error'].get('param')!r}, expected {param!r}"
    return None


async def test_a_nul_in_the_path_is_a_400_on_every_route(
    raw_api: tuple[FastAPI, httpx.AsyncClient], merchant: Any, settings: Any
) -> None:
    app, client = raw_api
    problems = []
    for method, route in api_routes(app):
        # A NUL inside each path parameter, or (no parameter) at the end of the path.
        path = _fill(route.path, "cs_%00") if "{" in route.path else route.path + "%00"
        r = await client.request(method, path, headers=_headers_for(route.path, merchant, settings))
        problems.append(_problem(method, path, r, "path"))
    assert [p for p in problems if p] == [], "\n".join(p for p in problems if p)
    # The finding's own example, on the public hosted page (no key at all).
    r = await client.get("/checkout/cs_%00")
    assert r.status_code == 400 and r.json()["error"]["param"] == "path"


async def test_a_nul_in_a_query_parameter_is_a_400_naming_it_on_every_route(
    raw_api: tuple[FastAPI, httpx.AsyncClient], merchant: Any, settings: Any
) -> None:
    app, client = raw_api
    problems = []
    for method, route in api_routes(app):
        path = _fill(route.path, "x1", merchant)
        names = [p.alias for p in route.dependant.query_params] or ["q"]
        for name in names:
            r = await client.request(
                method, path + "?" + urlencode({name: "a\x00b"}), headers=_headers_for(route.path, merchant, settings)
            )
            problems.append(_problem(method, f"{path}?{name}=", r, name))
    assert [p for p in problems if p] == [], "\n".join(p for p in problems if p)
    # In a name, the parameter cannot be named: `query`.
    r = await client.get("/v1/payments?ref%00=1", headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "query"


async def test_a_nul_in_a_header_is_a_400_naming_it(
    raw_api: tuple[FastAPI, httpx.AsyncClient], merchant: Any, settings: Any
) -> None:
    app, client = raw_api
    problems = []
    for method, route in api_routes(app):
        headers = {**_headers_for(route.path, merchant, settings), "Idempotency-Key": "k\x00"}
        r = await client.request(method, _fill(route.path, "x1", merchant), headers=headers, json={})
        problems.append(_problem(method, route.path, r, "Idempotency-Key"))
    assert [p for p in problems if p] == [], "\n".join(p for p in problems if p)


async def test_a_nul_in_any_json_string_is_a_400_naming_the_field_on_every_route(
    raw_api: tuple[FastAPI, httpx.AsyncClient], merchant: Any, settings: Any
) -> None:
    app, client = raw_api
    problems = []
    for method, route in api_routes(app):
        if method in ("GET", "DELETE") or (method, route.path) in NO_BODY:
            continue
        path = _fill(route.path, "x1", merchant)
        r = await client.request(
            method, path, json={"description": "a\x00b"}, headers=_headers_for(route.path, merchant, settings)
        )
        if (method, route.path) in SIGNED:
            assert r.status_code == 400 and r.json()["error"]["code"] in ("invalid_signature", "webhook_not_configured")
        elif route.path.startswith("/checkout/"):
            assert r.status_code in (400, 404), r.text  # a form, of a session that does not exist
        elif route.path.startswith("/dashboard/"):
            assert r.status_code in (303, 403), r.text  # a form behind sign-in and CSRF: nothing read
        else:
            problems.append(_problem(method, path, r, "description"))
    assert [p for p in problems if p] == [], "\n".join(p for p in problems if p)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (card_payment(customer="cus\x00tomer"), "customer"),
        (card_payment(description="\x00"), "description"),
        (card_payment(metadata={"order": "1\x002"}), "metadata.order"),
        (card_payment(metadata={"or\x00der": "12"}), "metadata"),
        (card_payment(return_url="https://shop.example/\x00"), "return_url"),
        (card_payment(reference="ref\x00"), "reference"),
        (card_payment(currency="BR\x00"), "currency"),
        ({**card_payment(), "payment_method": "pm_\x00"}, "payment_method"),
        (card_payment(payment_method={"type": "card", "card": {"number": "4242\x00"}}), "payment_method.card.number"),
        ({"amount": 100, "currency": "INR", "payment_method": {"type": "upi", "upi": {"vpa": "a@upi\x00"}}},
         "payment_method.upi.vpa"),
        ({"a": [{"b": ["ok", "no\x00"]}]}, "a[0].b[1]"),
    ],
)  # fmt: skip
async def test_payments_name_the_field_holding_the_nul(
    raw_api: tuple[FastAPI, httpx.AsyncClient], merchant: Any, body: dict[str, Any], param: str
) -> None:
    _, client = raw_api
    before = await client.get("/v1/payments", headers=auth(merchant.secret_key))
    r = await client.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["code"] == "invalid_character"
    after = await client.get("/v1/payments", headers=auth(merchant.secret_key))
    assert after.json()["data"] == before.json()["data"]  # nothing half-written


async def test_json_nested_too_deep_is_a_400_not_a_500(
    raw_api: tuple[FastAPI, httpx.AsyncClient], merchant: Any
) -> None:
    _, client = raw_api
    deep: Any = "x"
    for _ in range(300):  # orjson writes at most 254 levels: the idempotency fingerprint would have failed
        deep = [deep]
    r = await client.post(
        "/v1/payments",
        json=card_payment(metadata={"a": deep}),
        headers={**auth(merchant.secret_key), "Idempotency-Key": "deep"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("metadata.a")


@pytest.mark.parametrize("field", ["number", "expiry", "cvc", "holder_name"])
async def test_the_hosted_card_form_names_the_field_holding_the_nul(
    raw_api: tuple[FastAPI, httpx.AsyncClient], merchant: Any, field: str
) -> None:
    _, client = raw_api
    session = await new_session(client, merchant, f"nul-{field}")
    form = dict(x.split("=", 1) for x in card_form().split("&"))
    form[field] = form[field] + "%00"
    r = await client.post(
        page_path(session) + "/pay", content="&".join(f"{k}={v}" for k, v in form.items()), headers=FORM
    )
    assert r.status_code == 400
    # The form marks the field in error (aria-invalid) and says why; no payment was started.
    name = "expiry" if field == "expiry" else field
    assert re.search(rf'name="{name}"[^>]*aria-invalid="true"', r.text), r.text
    assert "NUL character" in r.text
    got = await client.get(f"/v1/checkout/sessions/{session['id']}", headers=auth(merchant.secret_key))
    assert got.json()["payment"] is None


async def test_the_hosted_method_form_names_the_vpa_holding_the_nul(
    raw_api: tuple[FastAPI, httpx.AsyncClient], merchant: Any
) -> None:
    _, client = raw_api
    session = await new_session(client, merchant, "nul-upi", currency="INR", payment_method_types=["card", "upi"])
    r = await client.post(page_path(session) + "/pay_method", content="type=upi&vpa=a%40upi%00", headers=FORM)
    assert r.status_code == 400 and "UPI ID" in r.text
    r = await client.post(page_path(session) + "/pay_method", content="type=upi%00", headers=FORM)
    assert r.status_code == 400


async def test_a_database_error_is_logged_without_its_message_and_goes_no_further(
    container: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A psycopg error quotes the value PostgreSQL refused: the 500 logs its type, route and code location,
    and the exception is not re-raised for the server to log in full."""
    app = FastAPI()
    errors.install(app)

    @app.get("/boom/{thing}")
    async def boom(thing: str) -> None:
        async with container.db.connection() as conn:
            await conn.execute("SELECT %s::int", (thing,))

    caplog.set_level(logging.INFO)
    transport = httpx.ASGITransport(app=app)  # raises what the app raises: nothing must come out
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom/secret4242")
    assert r.status_code == 500 and "secret4242" not in r.text
    ours = [rec for rec in caplog.records if rec.name != "httpx"]  # the test client logs the URL it asked for
    logged = "\n".join(rec.getMessage() + str(rec.exc_info or "") for rec in ours)
    assert "InvalidTextRepresentation" in logged and "/boom/{thing}" in logged
    assert "secret4242" not in logged


async def test_a_signed_notification_holding_a_nul_is_a_400_not_a_500(container: Any, simulator_url: str) -> None:
    """/webhooks/{processor} reads its body raw (for the signature): checked once verified, before it is stored."""
    from tender.processors.simulator import SimulatorProcessor
    from tender.services import notifications
    from tender.simulator.notify import sign

    processor = SimulatorProcessor(simulator_url, notify_secret="nul-test")
    event = {"id": "simevt_nul", "type": "authorization.updated", "created": int(time.time())}
    body = orjson.dumps({**event, "data": {"reference": "att_nul", "status": "declined", "message": "a\x00b"}})
    headers = {"Simulator-Signature": sign("nul-test", body, int(time.time()))}
    with pytest.raises(InvalidRequest) as caught:
        await notifications.receive(
            container.db, {"simulator": processor}, "simulator", headers, body, action_lookup=timedelta(seconds=60)
        )
    assert caught.value.param == "data.message" and caught.value.code == "invalid_character"
