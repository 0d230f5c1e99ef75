"""The service entry points that took over the units of work the routes and pages opened themselves
(issue 12 item 6): each opens its own connection or transaction and commits what it must."""

from __future__ import annotations

from typing import Any

from tender.services import checkout_page, merchants, readiness
from tender.store import migrate
from tests.support.api import auth
from tests.support.checkout import FORM, card_form, events_of, new_session, page_path


async def test_paying_a_session_past_its_expiry_commits_the_expiry_it_finds(
    api: Any, container: Any, merchant: Any
) -> None:
    """checkout.pay expires the session and raises SessionClosed inside the page's transaction: the expiry
    and its event must commit with it (rolled back, the page would show a form the shop considers open)."""
    session = await new_session(api, merchant, "order-late", expires_in=60)
    async with container.db.connection() as conn:
        await conn.execute(
            "UPDATE checkout_sessions SET expires_at = now() - interval '1 s' WHERE id = %s", (session["id"],)
        )
    page = await api.post(page_path(session) + "/pay", content=card_form(), headers=FORM)
    assert page.status_code == 410 and "expired" in page.text
    got = await api.get(f"/v1/checkout/sessions/{session['id']}", headers=auth(merchant.secret_key))
    assert got.json()["status"] == "expired" and got.json()["payment"] is None
    assert [e["data"]["object"]["id"] for e in await events_of(api, merchant, "checkout.session.expired")] == [
        session["id"]
    ]


async def test_the_page_view_reads_what_it_is_asked_for(api: Any, container: Any, merchant: Any) -> None:
    session = await new_session(api, merchant, "order-view")
    assert (await api.post(page_path(session) + "/pay", content=card_form(), headers=FORM)).status_code == 303
    bare = await checkout_page.view(container.db, session["id"])
    full = await checkout_page.view(container.db, session["id"], payment=True, merchant=True)
    assert bare is not None and full is not None
    assert bare.session.id == full.session.id == session["id"]
    assert (bare.payment, bare.merchant_name) == (None, None)
    assert full.payment is not None and full.payment.id == full.session.payment_id
    assert full.merchant_name == merchant.merchant.name
    assert await checkout_page.view(container.db, "cs_nope", payment=True, merchant=True) is None


async def test_a_key_is_known_while_it_works(container: Any, merchant: Any) -> None:
    assert await merchants.key_is_known(container.db, merchant.secret_key)
    assert not await merchants.key_is_known(container.db, "sk_test_" + "0" * 32)
    rolled = await merchants.roll_keys(container.db, merchant.merchant.id, 0)
    assert not await merchants.key_is_known(container.db, merchant.secret_key)
    assert await merchants.key_is_known(container.db, rolled.secret_key)


async def test_readiness_reads_the_schema_revision(container: Any) -> None:
    ready = await readiness.readiness(container.db, wait_seconds=2.0)
    assert ready.error is None
    assert ready.current == ready.expected == migrate.head_revision()
    assert ready.current is not None
