"""A FAKE of Stripe's Checkout Sessions API, following Stripe's API reference, because localstripe lacks
Checkout Sessions (issue 13 item 7 allows a small fake where the emulator falls short).

It serves, as https://api.stripe.com does (form-encoded requests, JSON answers, `Authorization: Bearer sk_...`):
- POST /v1/checkout/sessions                 create (mode=payment, line_items with price_data, success_url,
                                              cancel_url, client_reference_id, metadata, expires_at 30 min to 24 h)
- GET  /v1/checkout/sessions                 list, newest first (limit, starting_after, created[gte]); like
                                              Stripe's, it has NO client_reference_id filter
- GET  /v1/checkout/sessions/{id}            retrieve
- POST /v1/checkout/sessions/{id}/expire     expire an open session (400 otherwise)
Fields: id, object, url, status open|complete|expired, payment_status, payment_intent, client_reference_id,
amount_total, currency, success_url, cancel_url, metadata, expires_at, created.
Like localstripe, it ignores Idempotency-Key (so Tender's exactly-once cannot lean on it).
With `upstream` (localstripe's URL) it is a proxy: every other path is forwarded there, so one
TENDER_STRIPE_API_BASE serves both Checkout (here) and PaymentIntents and Refunds (localstripe), and
`pay_for_real` takes the shopper's payment as a real PaymentIntent at localstripe.

Test controls (what the shopper or a network fault would do): `pay(id)` completes a session as Stripe's page
would (a `pi_...` PaymentIntent, payment_status paid), `fail_creates` answers the next N creates 500 AFTER
making the session (an answer lost on the way back), `down` answers every request 503, `delay` slows creates.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

_KEY = re.compile(r"\[([^\]]*)\]")
_FORWARDED = {"authorization", "content-type", "idempotency-key", "stripe-version", "accept"}


def _nested(form: Any) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`) back into nested dicts (lists stay dicts keyed "0", "1"...)."""
    out: dict[str, Any] = {}
    for raw_key, value in form.items():
        head = raw_key.split("[", 1)[0]
        path = [head, *_KEY.findall(raw_key)]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if param:
        error["param"] = param
    return web.json_response({"error": error}, status=status)


class FakeStripeCheckout:
    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.creates = 0  # sessions made (whatever the answer)
        self.keys: dict[str, str] = {}  # session id -> the secret key that created it (whose account)
        self.fail_creates = 0
        self.down = False
        self.delay = 0.0  # seconds a create takes before the session exists (a slow Stripe)
        self.upstream: str | None = None  # localstripe: where every other path goes
        self.url = ""
        self._seq = itertools.count()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_post("/v1/checkout/sessions", self._create)
        app.router.add_get("/v1/checkout/sessions", self._list)
        app.router.add_get("/v1/checkout/sessions/{id}", self._retrieve)
        app.router.add_post("/v1/checkout/sessions/{id}/expire", self._expire)
        app.router.add_route("*", "/{tail:.*}", self._forward)  # last: what is not Checkout
        return app

    async def _forward(self, request: web.Request) -> web.Response:
        if self.upstream is None:
            return _error(404, f"Unrecognized request URL ({request.method}: {request.path}).")
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.upstream + request.path_qs, data=await request.read(), headers=headers
            ) as answer,
        ):
            return web.Response(
                body=await answer.read(), status=answer.status, content_type=answer.content_type or "application/json"
            )

    async def pay_for_real(self, session_id: str) -> dict[str, Any]:
        """The shopper pays on the page: a PaymentIntent confirmed (and captured) at localstripe for the
        session's amount, then the session complete with it."""
        assert self.upstream is not None
        s = self.sessions[session_id]
        auth = aiohttp.BasicAuth(self.keys[session_id])
        async with aiohttp.ClientSession(self.upstream, auth=auth) as client:
            card = {"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
                    "card[exp_year]": "2034", "card[cvc]": "123"}  # fmt: skip
            async with client.post("/v1/payment_methods", data=card) as r:
                method = await r.json()
            intent = {
                "amount": str(s["amount_total"]),
                "currency": s["currency"],
                "payment_method": method["id"],
                "confirm": "true",
                "metadata[tender_checkout_session]": str(s["client_reference_id"]),
            }
            async with client.post("/v1/payment_intents", data=intent) as r:
                pi = await r.json()
        assert pi["status"] == "succeeded", pi
        s.update(status="complete", payment_status="paid", payment_intent=pi["id"])
        return dict(s)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.down:
            return web.json_response({"error": {"type": "api_error", "message": "down"}}, status=503)
        if not request.headers.get("Authorization", "").startswith("Bearer sk_"):
            return web.json_response({"error": {"type": "invalid_request_error", "message": "No API key"}}, status=401)
        return await handler(request)  # type: ignore[no-any-return]

    # -- the shopper ------------------------------------------------------------------------------------

    def pay(self, session_id: str) -> dict[str, Any]:
        s = self.sessions[session_id]
        assert s["status"] == "open", s["status"]
        s.update(status="complete", payment_status="paid", payment_intent="pi_" + secrets.token_hex(12))
        return dict(s)

    def by_reference(self, reference: str) -> list[dict[str, Any]]:
        return [s for s in self.sessions.values() if s["client_reference_id"] == reference]

    # -- the API ----------------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        body = _nested(await request.post())
        if body.get("mode") != "payment":
            return _error(400, "Only mode=payment in this fake.", "mode")
        item = (body.get("line_items") or {}).get("0") or {}
        price = item.get("price_data") or {}
        try:
            amount = int(price["unit_amount"]) * int(item.get("quantity", "1"))
        except (KeyError, ValueError):
            return _error(400, "Missing required param: line_items[0][price_data][unit_amount].", "line_items")
        now = int(time.time())
        expires_at = int(body.get("expires_at") or now + 86400)
        if not now + 1800 - 5 <= expires_at <= now + 86400 + 5:
            return _error(400, "expires_at must be 30 minutes to 24 hours from now.", "expires_at")
        for url_param in ("success_url", "cancel_url"):
            if not str(body.get(url_param, "")).startswith(("http://", "https://")):
                return _error(400, f"Not a valid URL: {url_param}", url_param)
        await asyncio.sleep(self.delay)
        session_id = f"cs_test_{next(self._seq):04d}{secrets.token_hex(8)}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"{self.url}/pay/{session_id}",
            "status": "open",
            "payment_status": "unpaid",
            "payment_intent": None,
            "client_reference_id": body.get("client_reference_id"),
            "amount_total": amount,
            "currency": str(price.get("currency", "")).lower(),
            "success_url": body["success_url"],
            "cancel_url": body["cancel_url"],
            "metadata": body.get("metadata") or {},
            "mode": "payment",
            "expires_at": expires_at,
            "created": now,
        }
        self.sessions[session_id] = session
        self.keys[session_id] = request.headers["Authorization"].removeprefix("Bearer ")
        self.creates += 1
        if self.fail_creates > 0:  # made, but the answer is lost
            self.fail_creates -= 1
            return web.json_response({"error": {"type": "api_error", "message": "lost"}}, status=500)
        return web.json_response(session)

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        rows = sorted(self.sessions.values(), key=lambda s: s["id"], reverse=True)
        if "created[gte]" in q:
            rows = [s for s in rows if s["created"] >= int(q["created[gte]"])]
        if "starting_after" in q:
            ids = [s["id"] for s in rows]
            rows = rows[ids.index(q["starting_after"]) + 1 :] if q["starting_after"] in ids else []
        limit = int(q.get("limit", "10"))
        page = rows[:limit]
        return web.json_response(
            {"object": "list", "url": "/v1/checkout/sessions", "data": page, "has_more": len(rows) > limit}
        )

    async def _retrieve(self, request: web.Request) -> web.Response:
        s = self.sessions.get(request.match_info["id"])
        if s is None:
            return _error(404, "No such checkout.session", "session")
        return web.json_response(s)

    async def _expire(self, request: web.Request) -> web.Response:
        s = self.sessions.get(request.match_info["id"])
        if s is None:
            return _error(404, "No such checkout.session", "session")
        if s["status"] != "open":
            return _error(400, f"Only open sessions can be expired; this one is {s['status']}.")
        s["status"] = "expired"
        return web.json_response(s)


@asynccontextmanager
async def serve_fake() -> AsyncIterator[FakeStripeCheckout]:
    fake = FakeStripeCheckout()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def checkout_completed_event(session: dict[str, Any], kind: str = "checkout.session.completed") -> dict[str, Any]:
    """The event Stripe sends about `session` (as POST /webhooks/stripe hands it to checkout_stripe.apply_event)."""
    return {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "type": kind,
        "data": {"object": dict(session)},
    }


@asynccontextmanager
async def tender_with_stripe(
    settings: Any, processors: dict[str, Any], *, api_base: str, secret_key: str | None
) -> AsyncIterator[tuple[Any, Any]]:
    """(container, httpx client on the API app) of a Tender whose TENDER_STRIPE_API_BASE is `api_base` and
    TENDER_STRIPE_SECRET_KEY `secret_key` (None: only merchants' own accounts), on the tests' database."""
    import httpx
    from pydantic import SecretStr

    from tender.api.app import create_app
    from tender.bootstrap import build

    configured = settings.model_copy(
        update={"stripe_secret_key": SecretStr(secret_key) if secret_key else None, "stripe_api_base": api_base}
    )
    c = build(configured, configured.database_url)
    c.processors = {**c.processors, **processors}
    await c.open()
    try:
        app = create_app(c)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tender.test") as client:
            yield c, client
    finally:
        await c.db.close()
