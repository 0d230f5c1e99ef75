"""The dashboard's home over HTTP (the in-process app): a merchant's figures, chart and open issues, scoped to
its own merchant (another merchant's payments, failing endpoints and dead letters never show), and the
operator's totals across merchants."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tender.services.merchants import create_merchant
from tests.support.dashboard_client import dashboard_client, new_user, operator_sign_in, sign_in
from tests.support.payments import authorizer, drain, pay
from tests.support.webhooks import delete_made_endpoints, make_endpoint

pytestmark = pytest.mark.integration


@pytest.fixture
async def endpoints_removed(container: Any) -> AsyncIterator[None]:
    yield
    await delete_made_endpoints(container)


def figure(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">(.*?)</dd>', html, re.S)
    assert found, testid
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


async def test_the_home_page_shows_the_merchants_day_and_chart(api: Any, container: Any, merchant: Any) -> None:
    for number in ("4242424242424242", "4242424242424242", "4000000000000002"):
        await pay(api, merchant, number)
    await pay(api, merchant, "4242424242424242", currency="USD", amount=1000)
    await drain(authorizer(container))
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        await sign_in(client, email)
        home = (await client.get("/dashboard")).text
    assert figure(home, "today-count") == "4"
    assert figure(home, "today-volume") == "50.00 BRL 10.00 USD"
    assert figure(home, "today-success-rate") == "75.0%"
    # The chart and its table: the same numbers, today's row first.
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in home and '<title id="payments-per-day-title">' in home
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>((?:<td class="num">[^<]*</td>)+)</tr>', home)
    counts = [re.findall(r">([^<]*)</td>", cells) for label, cells in rows[:30]]
    assert len(rows) >= 30 and counts[0] == ["4", "3"] and all(c == ["0", "0"] for c in counts[1:])
    assert 'id="volume-brl"' in home and 'id="volume-usd"' in home
    assert "Nothing needs your attention." in home


async def test_a_merchant_never_sees_another_merchants_figures_or_issues(
    api: Any, container: Any, merchant: Any, endpoints_removed: None
) -> None:
    other = await create_merchant(container.db, f"Other {uuid.uuid4().hex[:6]}")
    theirs = await pay(api, other, "4242424242424242", amount=777700)
    await drain(authorizer(container))
    endpoint = await make_endpoint(container, other, f"https://hooks.example/{uuid.uuid4().hex}")
    letter = f"dl_{uuid.uuid4().hex}"
    async with container.db.connection() as conn:
        await conn.execute("UPDATE webhook_endpoints SET failing_since = now() WHERE id = %s", (endpoint["id"],))
        await conn.execute(
            "INSERT INTO dead_letters (id, kind, object_id, operation, tries, last_error)"
            " VALUES (%s, 'payment', %s, 'capture', 8, 'processor unreachable')",
            (letter, theirs["id"]),
        )
    try:
        mine = await new_user(container, merchant.merchant.id)
        async with dashboard_client(container) as client:
            await sign_in(client, mine)
            for path in ("/dashboard", "/dashboard/issues"):
                page = (await client.get(path)).text
                assert endpoint["url"] not in page and theirs["id"] not in page and other.merchant.name not in page
                assert "7,777.00" not in page and "7777.00" not in page
        their_user = await new_user(container, other.merchant.id)
        async with dashboard_client(container) as client:
            await sign_in(client, their_user)
            home = (await client.get("/dashboard")).text
            assert endpoint["url"] in home and theirs["id"] in home and "7777.00 BRL" in home
            issues = await client.get("/dashboard/issues")
            assert issues.status_code == 200 and endpoint["url"] in issues.text and theirs["id"] in issues.text
    finally:
        async with container.db.connection() as conn:
            await conn.execute("UPDATE dead_letters SET status = 'resolved' WHERE id = %s", (letter,))


async def test_the_operator_home_totals_every_merchant(api: Any, container: Any, merchant: Any) -> None:
    other = await create_merchant(container.db, f"Other {uuid.uuid4().hex[:6]}")
    admin_key = container.settings.admin_key.get_secret_value()
    async with dashboard_client(container) as client:
        await operator_sign_in(client, admin_key)
        before = int(figure((await client.get("/dashboard")).text, "today-count"))
        await pay(api, merchant, "4242424242424242")
        await pay(api, other, "4242424242424242")
        after = (await client.get("/dashboard")).text
        assert int(figure(after, "today-count")) >= before + 2
        assert merchant.merchant.id in after and other.merchant.id in after  # both can be chosen
    await drain(authorizer(container))


async def test_the_home_page_needs_a_session(container: Any) -> None:
    async with dashboard_client(container) as client:
        for path in ("/dashboard", "/dashboard/issues"):
            r = await client.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")
