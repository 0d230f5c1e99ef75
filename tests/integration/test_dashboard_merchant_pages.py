"""The dashboard's merchant pages over the in-process app (httpx): payments (search, a payment, capture,
cancel, refund), money (balance, payables, settlements), customers and subscriptions, webhooks (delivery log,
resend, secret rotation) and API keys (roll).

Each page answers 200 for its merchant and a 404 page for another merchant's object, and every action refuses
another merchant's object (404, nothing done). Actions do what the API does, through its services and
idempotency: a form submitted twice acts once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from tender.errors import InvalidRequest
from tender.services import dashboard, dashboard_users, settlement
from tender.services.merchants import NewMerchant, create_merchant
from tender.store.dashboard_queries import AccountNow, BalanceMovement
from tests.support.api import auth
from tests.support.money import query
from tests.support.payments import authorizer, drain, get, pay
from tests.support.refunds import drain_refunds
from tests.support.refunds import pump as refund_pump
from tests.support.webhooks import delete_made_endpoints, make_endpoint

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


@dataclass
class Shop:
    """A merchant, its API keys, and a dashboard client signed in as its user."""

    merchant: NewMerchant
    client: httpx.AsyncClient

    @property
    def id(self) -> str:
        return self.merchant.merchant.id

    async def csrf(self) -> str:
        page = await self.client.get("/dashboard/api-keys")
        found = _CSRF.search(page.text)
        assert found, page.text[:500]
        return found.group(1)


@pytest.fixture
async def shops(container: Any) -> AsyncIterator[tuple[Shop, Shop]]:
    from tender.api.app import create_app

    app = create_app(container)
    made = []
    for name in ("Shop A", "Shop B"):
        merchant = await create_merchant(container.db, f"{name} {uuid.uuid4().hex[:6]}")
        email = f"staff-{uuid.uuid4().hex[:8]}@example.com"
        await dashboard_users.create_user(container.db, merchant.merchant.id, email, PASSWORD)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tender.test")
        form = await client.get("/dashboard/login")
        token = _CSRF.search(form.text)
        assert token, form.text[:500]
        signed = await client.post(
            "/dashboard/login", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
        )
        assert signed.status_code == 303, signed.text[:500]
        made.append(Shop(merchant, client))
    yield made[0], made[1]
    for shop in made:
        await shop.client.aclose()
    await delete_made_endpoints(container)


async def _succeeded(
    api: Any, container: Any, merchant: NewMerchant, number: str = "4242424242424242", **kw: Any
) -> dict[str, Any]:
    created = await pay(api, merchant, number, **kw)
    await drain(authorizer(container))
    payment = await get(api, merchant, created["id"])
    assert payment["status"] in ("succeeded", "requires_capture"), payment
    return payment


async def _confirm_key(shop: Shop, url: str) -> str:
    page = await shop.client.get(url)
    assert page.status_code == 200, page.text[:500]
    found = _KEY.search(page.text)
    assert found
    return found.group(1)


async def _refunds_of(container: Any, payment_id: str) -> list[dict[str, Any]]:
    return await query(container, "SELECT * FROM refunds WHERE payment_id = %s ORDER BY id", payment_id)


# -- every page, and another merchant's objects ---------------------------------------------------------


async def test_each_page_is_200_for_its_merchant_and_404_for_another(
    api: Any, container: Any, shops: tuple[Shop, Shop]
) -> None:
    a, b = shops
    customer = (
        await api.post("/v1/customers", json={"email": "ana@example.com"}, headers=auth(a.merchant.secret_key))
    ).json()
    payment = await _succeeded(
        api, container, a.merchant, reference=f"ord-{uuid.uuid4().hex[:8]}", customer=customer["id"]
    )
    endpoint = await make_endpoint(container, a.merchant, "http://127.0.0.1:9/hooks")
    event = (await query(container, "SELECT id FROM events WHERE object_id = %s ORDER BY id LIMIT 1", payment["id"]))[0]
    payable = (await query(container, "SELECT payment_date FROM payables WHERE payment_id = %s", payment["id"]))[0]
    settled = await settlement.settle_group(container.db, a.id, "BRL", payable["payment_date"])
    assert settled is not None
    stl = settled.settlement.id

    own = [
        ("/dashboard/payments", payment["id"]),
        (f"/dashboard/payments?q={payment['reference']}", payment["id"]),
        (f"/dashboard/payments/{payment['id']}", "payment.succeeded"),
        (f"/dashboard/payments/{payment['id']}/refund", "Refund 25.00 BRL"),
        ("/dashboard/balance", "Pending"),
        ("/dashboard/balance?days=90", "Balance over 90 days"),
        ("/dashboard/payables", payment["id"]),
        ("/dashboard/settlements", stl),
        (f"/dashboard/settlements/{stl}", "23.75 BRL"),
        ("/dashboard/customers", customer["id"]),
        (f"/dashboard/customers/{customer['id']}", payment["id"]),
        ("/dashboard/subscriptions", "Subscriptions"),
        ("/dashboard/webhooks", endpoint["id"]),
        (f"/dashboard/webhooks/{endpoint['id']}", "Delivery log"),
        (f"/dashboard/webhooks/events/{event['id']}/resend?endpoint={endpoint['id']}", event["id"]),
        (f"/dashboard/webhooks/{endpoint['id']}/rotate", "Rotate"),
        ("/dashboard/api-keys", "sk_test_"),
        ("/dashboard/api-keys/roll", "Roll"),
    ]
    for url, shown in own:
        page = await a.client.get(url)
        assert page.status_code == 200, (url, page.text[:300])
        assert shown in page.text, url
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"

    others = [
        f"/dashboard/payments/{payment['id']}",
        f"/dashboard/payments/{payment['id']}/refund",
        f"/dashboard/payments/{payment['id']}/cancel",
        f"/dashboard/settlements/{stl}",
        f"/dashboard/customers/{customer['id']}",
        f"/dashboard/webhooks/{endpoint['id']}",
        f"/dashboard/webhooks/{endpoint['id']}/rotate",
        f"/dashboard/webhooks/events/{event['id']}/resend",
    ]
    for url in others:
        page = await b.client.get(url)
        assert page.status_code == 404, url
        assert "nothing here" in page.text
    # B's lists and searches show nothing of A's.
    for url in (
        f"/dashboard/payments?q={payment['id']}",
        f"/dashboard/payments?q={payment['reference']}",
        f"/dashboard/payments?q={customer['id']}",
        "/dashboard/payments",
        "/dashboard/payables",
        "/dashboard/settlements",
        "/dashboard/customers",
        "/dashboard/webhooks",
    ):
        page = await b.client.get(url)
        assert page.status_code == 200, url
        for foreign in (payment["id"], customer["id"], stl, endpoint["id"]):
            assert f">{foreign}<" not in page.text, (url, foreign)  # in no row (the search box echoes it)

    # B's actions on A's objects: 404, nothing done.
    token = await b.csrf()
    deliveries_before = await query(
        container, "SELECT id, updated FROM webhook_deliveries WHERE event_id = %s", event["id"]
    )
    secret_before = await query(container, "SELECT secret_ct FROM webhook_endpoints WHERE id = %s", endpoint["id"])
    for url in (
        f"/dashboard/payments/{payment['id']}/refund",
        f"/dashboard/payments/{payment['id']}/cancel",
        f"/dashboard/payments/{payment['id']}/capture",
        f"/dashboard/webhooks/events/{event['id']}/resend",
        f"/dashboard/webhooks/{endpoint['id']}/rotate",
    ):
        answer = await b.client.post(url, data={"csrf_token": token, "idempotency_key": str(uuid.uuid4())})
        assert answer.status_code == 404, (url, answer.status_code)
    assert await _refunds_of(container, payment["id"]) == []
    assert (
        await query(container, "SELECT id, updated FROM webhook_deliveries WHERE event_id = %s", event["id"])
        == deliveries_before
    )
    assert (
        await query(container, "SELECT secret_ct FROM webhook_endpoints WHERE id = %s", endpoint["id"]) == secret_before
    )


async def test_signed_out_pages_send_to_sign_in(container: Any, shops: tuple[Shop, Shop]) -> None:
    from tender.api.app import create_app

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)), base_url="http://t") as c:
        for url in ("/dashboard/payments", "/dashboard/balance", "/dashboard/webhooks", "/dashboard/api-keys"):
            page = await c.get(url)
            assert page.status_code == 303 and page.headers["location"].startswith("/dashboard/login"), url


# -- actions -------------------------------------------------------------------------------------------


async def test_a_refund_from_the_page_is_made_once_however_often_the_form_is_sent(
    api: Any, container: Any, shops: tuple[Shop, Shop]
) -> None:
    a, _ = shops
    payment = await _succeeded(api, container, a.merchant)
    url = f"/dashboard/payments/{payment['id']}/refund"
    confirm = await a.client.get(url, params={"amount": "5.00"})
    assert "Refund 5.00 BRL" in confirm.text
    key = _KEY.search(confirm.text).group(1)  # type: ignore[union-attr]
    token = _CSRF.search(confirm.text).group(1)  # type: ignore[union-attr]
    form = {"csrf_token": token, "idempotency_key": key, "amount": "5.00"}
    first = await a.client.post(url, data=form)
    second = await a.client.post(url, data=form)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == f"/dashboard/payments/{payment['id']}?done=refund"
    refunds = await _refunds_of(container, payment["id"])
    assert [(r["amount"], r["status"]) for r in refunds] == [(500, "pending")]
    await drain_refunds(refund_pump(container))
    # What the API shows: the refund, and the payment's amount_refunded.
    listed = (await api.get(f"/v1/refunds?payment={payment['id']}", headers=auth(a.merchant.secret_key))).json()
    assert [(r["amount"], r["status"]) for r in listed["data"]] == [(500, "succeeded")]
    assert (await get(api, a.merchant, payment["id"]))["amount_refunded"] == 500
    page = await a.client.get(f"/dashboard/payments/{payment['id']}?done=refund")
    assert "Refund requested" in page.text and refunds[0]["id"] in page.text and "refund.succeeded" in page.text
    # The same key with another amount is the API's idempotency_error, and nothing is done.
    other = await a.client.post(url, data={**form, "amount": "6.00"})
    assert other.status_code == 422 and "idempotency_error" in other.text
    assert len(await _refunds_of(container, payment["id"])) == 1


async def test_a_refund_error_is_named_as_the_api_names_it_and_nothing_is_done(
    api: Any, container: Any, shops: tuple[Shop, Shop]
) -> None:
    a, _ = shops
    payment = await _succeeded(api, container, a.merchant)
    url = f"/dashboard/payments/{payment['id']}/refund"
    token = await a.csrf()
    too_much = await a.client.post(
        url, data={"csrf_token": token, "idempotency_key": "k1-" + uuid.uuid4().hex, "amount": "99.00"}
    )
    assert too_much.status_code == 400
    assert "amount_too_large" in too_much.text and "param <code>amount</code>" in too_much.text
    not_a_number = await a.client.post(
        url, data={"csrf_token": token, "idempotency_key": "k2-" + uuid.uuid4().hex, "amount": "abc"}
    )
    assert not_a_number.status_code == 400 and "param <code>amount</code>" in not_a_number.text
    too_precise = await a.client.get(url, params={"amount": "1.234"})
    assert too_precise.status_code == 400 and "decimal places" in too_precise.text
    no_csrf = await a.client.post(url, data={"idempotency_key": uuid.uuid4().hex, "amount": "1.00"})
    assert no_csrf.status_code == 403
    assert await _refunds_of(container, payment["id"]) == []


async def test_capture_and_cancel_from_the_page_go_through_the_worker_once(
    api: Any, container: Any, shops: tuple[Shop, Shop]
) -> None:
    a, _ = shops
    to_capture = await _succeeded(api, container, a.merchant, capture=False)
    to_cancel = await _succeeded(api, container, a.merchant, capture=False)
    assert to_capture["status"] == to_cancel["status"] == "requires_capture"
    page = await a.client.get(f"/dashboard/payments/{to_capture['id']}")
    assert 'data-testid="capture-button"' in page.text and 'data-testid="cancel-button"' in page.text
    assert 'data-testid="refund-button"' not in page.text

    key = await _confirm_key(a, f"/dashboard/payments/{to_capture['id']}/capture?amount=20.00")
    token = await a.csrf()
    form = {"csrf_token": token, "idempotency_key": key, "amount": "20.00"}
    for _ in range(2):
        sent = await a.client.post(f"/dashboard/payments/{to_capture['id']}/capture", data=form)
        assert sent.status_code == 303
    key = await _confirm_key(a, f"/dashboard/payments/{to_cancel['id']}/cancel")
    cancel = await a.client.post(
        f"/dashboard/payments/{to_cancel['id']}/cancel", data={"csrf_token": token, "idempotency_key": key}
    )
    assert cancel.status_code == 303
    captures = await query(
        container,
        "SELECT amount FROM payment_attempts WHERE payment_id = %s AND operation = 'capture'",
        to_capture["id"],
    )
    assert [c["amount"] for c in captures] == [2000]
    await drain(authorizer(container))
    captured = await get(api, a.merchant, to_capture["id"])
    assert (captured["status"], captured["amount_captured"]) == ("succeeded", 2000)
    assert (await get(api, a.merchant, to_cancel["id"]))["status"] == "canceled"
    # A canceled payment cannot be canceled again: the API's error, on the page.
    again = await a.client.post(
        f"/dashboard/payments/{to_cancel['id']}/cancel", data={"csrf_token": token, "idempotency_key": uuid.uuid4().hex}
    )
    assert again.status_code == 400 and "payment_unexpected_state" in again.text


async def test_resend_rotate_and_roll_keys(api: Any, container: Any, shops: tuple[Shop, Shop]) -> None:
    a, _ = shops
    endpoint = await make_endpoint(container, a.merchant, "http://127.0.0.1:9/hooks")
    payment = await _succeeded(api, container, a.merchant)
    event = (await query(container, "SELECT id FROM events WHERE object_id = %s ORDER BY id LIMIT 1", payment["id"]))[0]
    # Stand in for a delivery that failed for good.
    await query(
        container,
        "UPDATE webhook_deliveries SET status = 'failed', next_run_at = NULL, attempts = 3, last_status_code = 500"
        " WHERE event_id = %s RETURNING id",
        event["id"],
    )
    log = await a.client.get(f"/dashboard/webhooks/{endpoint['id']}")
    assert event["id"] in log.text and "HTTP 500" in log.text
    key = await _confirm_key(a, f"/dashboard/webhooks/events/{event['id']}/resend?endpoint={endpoint['id']}")
    token = await a.csrf()
    form = {"csrf_token": token, "idempotency_key": key, "endpoint": endpoint["id"], "back": ""}
    for _ in range(2):
        sent = await a.client.post(f"/dashboard/webhooks/events/{event['id']}/resend", data=form)
        assert sent.status_code == 303
        assert sent.headers["location"] == f"/dashboard/webhooks/{endpoint['id']}?done=resend"
    rows = await query(
        container, "SELECT status, tries, next_run_at FROM webhook_deliveries WHERE event_id = %s", event["id"]
    )
    assert [(r["status"], r["tries"]) for r in rows] == [("pending", 0)] and rows[0]["next_run_at"] is not None
    replays = await query(
        container, "SELECT count(*) AS n FROM idempotency_keys WHERE merchant_id = %s AND key = %s", a.id, key
    )
    assert replays[0]["n"] == 1

    # From the payment's timeline: to every endpoint listening, and back to the payment.
    back = f"/dashboard/payments/{payment['id']}"
    key = await _confirm_key(a, f"/dashboard/webhooks/events/{event['id']}/resend?back={back}")
    sent = await a.client.post(
        f"/dashboard/webhooks/events/{event['id']}/resend",
        data={"csrf_token": token, "idempotency_key": key, "endpoint": "", "back": back},
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"{back}?done=resend"
    assert "Resend queued" in (await a.client.get(sent.headers["location"])).text
    # Only a dashboard path is a way back.
    key = await _confirm_key(a, f"/dashboard/webhooks/events/{event['id']}/resend")
    sent = await a.client.post(
        f"/dashboard/webhooks/events/{event['id']}/resend",
        data={"csrf_token": token, "idempotency_key": key, "back": "https://evil.example/"},
    )
    assert sent.headers["location"] == "/dashboard?done=resend"

    key = await _confirm_key(a, f"/dashboard/webhooks/{endpoint['id']}/rotate")
    before = await query(container, "SELECT secret_ct FROM webhook_endpoints WHERE id = %s", endpoint["id"])
    shown = await a.client.post(
        f"/dashboard/webhooks/{endpoint['id']}/rotate", data={"csrf_token": token, "idempotency_key": key}
    )
    assert shown.status_code == 200
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", shown.text)
    assert secret and endpoint["secret"] != secret.group(0)
    again = await a.client.post(
        f"/dashboard/webhooks/{endpoint['id']}/rotate", data={"csrf_token": token, "idempotency_key": key}
    )
    assert secret.group(0) in again.text and "nothing was done twice" in again.text
    after = await query(
        container, "SELECT secret_ct, previous_secret_ct FROM webhook_endpoints WHERE id = %s", endpoint["id"]
    )
    assert after[0]["previous_secret_ct"] == before[0]["secret_ct"]  # rotated once: the first secret is the previous

    key = await _confirm_key(a, "/dashboard/api-keys/roll")
    rolled = await a.client.post("/dashboard/api-keys/roll", data={"csrf_token": token, "idempotency_key": key})
    assert rolled.status_code == 200
    new_key = re.search(r"sk_test_[A-Za-z0-9_\-]+", rolled.text)
    assert new_key
    old = await api.get("/v1/payments", headers=auth(a.merchant.secret_key))
    assert old.status_code == 401
    assert (await api.get("/v1/payments", headers=auth(new_key.group(0)))).status_code == 200


async def test_a_confirmation_page_asked_again_from_the_same_link_has_the_same_key(
    api: Any, container: Any, shops: tuple[Shop, Shop]
) -> None:
    """Each confirmation link carries its page's nonce (`k`): Back to the confirmation page after confirming asks
    again with it and gets the same Idempotency-Key, so confirming again replays instead of acting twice; a new
    visit to the page with the link is a new nonce, a new key."""
    a, _ = shops
    endpoint = await make_endpoint(container, a.merchant, "http://127.0.0.1:9/hooks")
    payment = await _succeeded(api, container, a.merchant)
    event = (await query(container, "SELECT id FROM events WHERE object_id = %s ORDER BY id LIMIT 1", payment["id"]))[0]

    async def link(page: str, pattern: str) -> str:
        found = re.search(pattern, (await a.client.get(page)).text)
        assert found, pattern
        return found.group(1).replace("&amp;", "&")

    log, page = f"/dashboard/webhooks/{endpoint['id']}", f"/dashboard/payments/{payment['id']}"
    links = [
        await link("/dashboard/api-keys", r'href="(/dashboard/api-keys/roll\?k=[^"]+)"'),
        await link(log, r'href="(/dashboard/webhooks/[^"]+/rotate\?k=[^"]+)"'),
        await link(log, rf'href="(/dashboard/webhooks/events/{event["id"]}/resend\?endpoint=[^"]+&amp;k=[^"]+)"'),
        await link(page, r'href="(/dashboard/webhooks/events/[^"]+/resend\?back=[^"]+&amp;k=[^"]+)"'),
    ]
    refund = await a.client.get(page)
    nonce = re.search(r'name="k" value="([^"]+)"', refund.text)
    assert nonce
    for amount in ("1.00", "2.00"):  # one page, two amounts: two actions
        links.append(f"/dashboard/payments/{payment['id']}/refund?amount={amount}&k={nonce.group(1)}")
    keys = [await _confirm_key(a, url) for url in links]
    assert keys == [await _confirm_key(a, url) for url in links]  # asked again: the same keys
    assert len(set(keys)) == len(keys)  # one action each
    fresh = await link("/dashboard/api-keys", r'href="(/dashboard/api-keys/roll\?k=[^"]+)"')
    assert await _confirm_key(a, fresh) != keys[0]  # a new visit to the page: a new action
    bare = "/dashboard/api-keys/roll"  # no nonce (a typed URL): a fresh key every time, as before
    assert await _confirm_key(a, bare) != await _confirm_key(a, bare)

    # Roll, then Back to the confirmation page and confirm again: rolled once, the same new key shown.
    token = await a.csrf()
    rolled = await a.client.post("/dashboard/api-keys/roll", data={"csrf_token": token, "idempotency_key": keys[0]})
    again = await a.client.post(
        "/dashboard/api-keys/roll", data={"csrf_token": token, "idempotency_key": await _confirm_key(a, links[0])}
    )
    shown = [re.findall(r"sk_test_[A-Za-z0-9_\-]+", r.text) for r in (rolled, again)]
    assert shown[0] and shown[0] == shown[1]
    assert (await api.get("/v1/payments", headers=auth(shown[0][0]))).status_code == 200


# -- search ------------------------------------------------------------------------------------------------


async def test_search_by_each_field_newest_first_with_a_cursor(
    api: Any, container: Any, shops: tuple[Shop, Shop]
) -> None:
    a, _ = shops
    customer = (
        await api.post("/v1/customers", json={"email": "bo@example.com"}, headers=auth(a.merchant.secret_key))
    ).json()
    visa = await _succeeded(api, container, a.merchant, reference=f"ref-{uuid.uuid4().hex[:8]}")
    master = await _succeeded(api, container, a.merchant, "5555555555554444", customer=customer["id"])
    declined = await pay(api, a.merchant, "4000000000000002")
    await drain(authorizer(container))

    async def found(**params: str) -> list[str]:
        page = await a.client.get("/dashboard/payments", params=params)
        assert page.status_code == 200, page.text[:300]
        return re.findall(r'<th scope="row"><a href="/dashboard/payments/(pay_\w+)"', page.text)

    assert await found() == [declined["id"], master["id"], visa["id"]]
    assert await found(q=visa["id"]) == [visa["id"]]
    assert await found(q=visa["reference"]) == [visa["id"]]
    assert await found(q="4444") == [master["id"]]
    assert await found(q=customer["id"]) == [master["id"]]
    assert await found(q="bo@example.com") == [master["id"]]
    assert await found(status="failed") == [declined["id"]]
    today = datetime.now(container.settings.business_tz).date()
    assert await found(**{"from": today.isoformat(), "to": today.isoformat()}) == [
        declined["id"],
        master["id"],
        visa["id"],
    ]
    assert await found(**{"to": (today - timedelta(days=1)).isoformat()}) == []
    assert await found(starting_after=master["id"]) == [visa["id"]]
    bad = await a.client.get("/dashboard/payments", params={"status": "lost"})
    assert bad.status_code == 400 and "param <code>status</code>" in bad.text
    bad = await a.client.get("/dashboard/payments", params={"from": "yesterday"})
    assert bad.status_code == 400 and "param <code>from</code>" in bad.text


# -- money ------------------------------------------------------------------------------------------------


async def test_balance_chart_shows_pending_and_available_by_day(
    api: Any, container: Any, shops: tuple[Shop, Shop]
) -> None:
    a, _ = shops
    await _succeeded(api, container, a.merchant)  # credit: 2375 pending
    await _succeeded(api, container, a.merchant, "4000056655665556")  # debit: 2425 available
    page = await a.client.get("/dashboard/balance")
    assert page.status_code == 200
    assert "<svg" in page.text and 'role="img"' in page.text
    assert "23.75 BRL" in page.text and "24.25 BRL" in page.text
    today = datetime.now(container.settings.business_tz).date()
    history = await dashboard.balance_history(
        container.db, a.id, days=30, tz=container.settings.business_tz, today=today
    )
    points = history.series["BRL"]
    assert len(points) == 30 and points[-1].day == today
    assert (points[-1].pending, points[-1].available) == (2375, 2425)
    assert (points[0].pending, points[0].available) == (0, 0)
    # Tomorrow, today is a closed day: read once, then remembered (the ledger is append-only), the same figures.
    tz = container.settings.business_tz
    tomorrow = today + timedelta(days=1)
    later = datetime.combine(tomorrow, datetime.min.time(), tz) + timedelta(hours=1)
    for _ in range(2):
        seen = await dashboard.balance_history(container.db, a.id, days=30, tz=tz, today=tomorrow, now=later)
        assert [(p.day, p.pending, p.available) for p in seen.series["BRL"][-2:]] == [
            (today, 2375, 2425),
            (tomorrow, 2375, 2425),
        ]
    due = await a.client.get("/dashboard/payables")
    assert (today + timedelta(days=30)).isoformat() in due.text


def test_history_walks_back_from_today() -> None:
    today = date(2026, 3, 10)
    now = [AccountNow("merchant_pending", "BRL", 900), AccountNow("merchant_available", "BRL", 100)]
    moves = [
        BalanceMovement(date(2026, 3, 9), "merchant_pending", "BRL", 400),
        BalanceMovement(date(2026, 3, 10), "merchant_pending", "BRL", 500),
        BalanceMovement(date(2026, 3, 10), "merchant_available", "BRL", 100),
        BalanceMovement(date(2026, 3, 8), "merchant_available", "USD", 7),
    ]
    series = dashboard.history_series(now, moves, date(2026, 3, 8), today)
    assert [(p.day.day, p.pending, p.available) for p in series["BRL"]] == [(8, 0, 0), (9, 400, 0), (10, 900, 100)]
    assert [(p.day.day, p.available) for p in series["USD"]] == [(8, 0), (9, 0), (10, 0)]  # moved then, 0 now


def test_amounts_in_major_units_never_through_a_float() -> None:
    assert dashboard.parse_amount("12.50", "BRL") == 1250
    assert dashboard.parse_amount("1200", "JPY") == 1200
    assert dashboard.parse_amount("1.234", "BHD") == 1234
    assert dashboard.parse_amount("", "BRL") is None
    for bad in ("1.234", "-1", "0", "nan", "1e400", "x", "Infinity"):
        with pytest.raises(InvalidRequest) as raised:
            dashboard.parse_amount(bad, "BRL")
        assert getattr(raised.value, "param", None) == "amount"


def test_the_search_box_tells_ids_references_last4_and_emails_apart() -> None:
    tz = UTC
    assert dashboard.parse_search("  pay_X ", None, None, None, tz).text == "pay_X"
    s = dashboard.parse_search("", "succeeded", "2026-01-01", "2026-01-31", tz)
    assert s.text is None and s.status == "succeeded"
    assert s.created_from == datetime(2026, 1, 1, tzinfo=UTC) and s.created_before == datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(InvalidRequest) as raised:
        dashboard.parse_search(None, None, "2026-02-01", "2026-01-01", tz)
    assert getattr(raised.value, "param", None) == "to"


# -- customers and subscriptions; operators --------------------------------------------------------------


async def test_a_customer_with_its_card_subscription_and_invoice(
    api: Any, container: Any, shops: tuple[Shop, Shop]
) -> None:
    from tests.support.subscriptions import customer, subscribe

    a, b = shops
    cus = await customer(api, a.merchant)
    sub = await subscribe(api, a.merchant, cus, amount=1990)
    await drain(authorizer(container))
    page = await a.client.get(f"/dashboard/customers/{cus}")
    assert page.status_code == 200
    for shown in (sub["id"], "19.90 BRL every month", "visa ···· 4242", "(default)", sub["latest_invoice"], "paid"):
        assert shown in page.text, shown
    listed = await a.client.get("/dashboard/subscriptions?status=active")
    assert sub["id"] in listed.text and cus in listed.text
    assert (await a.client.get("/dashboard/subscriptions?status=canceled")).text.count(sub["id"]) == 0
    bad = await a.client.get("/dashboard/subscriptions?status=sleeping")
    assert bad.status_code == 400 and "param <code>status</code>" in bad.text
    assert (await b.client.get(f"/dashboard/customers/{cus}")).status_code == 404
    assert sub["id"] not in (await b.client.get("/dashboard/subscriptions")).text


async def test_an_operator_sees_the_merchant_they_picked_and_only_it(
    api: Any, container: Any, shops: tuple[Shop, Shop]
) -> None:
    from tests.support.dashboard_client import dashboard_client, operator_sign_in

    a, b = shops
    payment = await _succeeded(api, container, a.merchant)
    async with dashboard_client(container) as operator:
        signed = await operator_sign_in(operator, container.settings.admin_key.get_secret_value())
        assert signed.status_code == 303
        # No merchant picked yet: a merchant's page sends the operator home to pick one.
        first = await operator.get("/dashboard/payments")
        assert first.status_code == 303 and first.headers["location"] == "/dashboard"
        home = await operator.get("/dashboard")
        token = _CSRF.search(home.text).group(1)  # type: ignore[union-attr]
        for merchant, status in ((a, 200), (b, 404)):
            picked = await operator.post("/dashboard/merchant", data={"csrf_token": token, "merchant": merchant.id})
            assert picked.status_code == 303
            assert (await operator.get(f"/dashboard/payments/{payment['id']}")).status_code == status
