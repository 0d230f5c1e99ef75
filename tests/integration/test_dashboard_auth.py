"""Dashboard sign-in over HTTP (the in-process app): sessions and their cookie, wrong passwords without user
enumeration, the rate limit, CSRF, the idle timeout, sign-out, and operators with the admin key."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest

from tender.services.dashboard_users import create_user
from tender.services.merchants import create_merchant
from tests.support.dashboard_client import (
    PASSWORD,
    csrf_of,
    dashboard_client,
    new_user,
    operator_sign_in,
    sign_in,
)

pytestmark = pytest.mark.integration


async def test_a_user_signs_in_and_sees_its_merchant_home(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        away = await client.get("/dashboard")
        assert away.status_code == 303 and away.headers["location"].startswith("/dashboard/login?next=/dashboard")
        r = await sign_in(client, email.upper())  # emails are case-insensitive
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"
        home = await client.get("/dashboard")
        assert home.status_code == 200
        assert merchant.merchant.name in home.text and email in home.text
        assert 'id="payments-per-day"' in home.text and "<table>" in home.text
        assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
        assert home.headers["cache-control"] == "no-store"


async def test_the_session_cookie_flags(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        r = await sign_in(client, email)
        cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("tender_session="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/dashboard"} <= flags
        assert "secure" not in flags  # plain http in this test
    async with dashboard_client(container, https=True) as client:
        r = await sign_in(client, email)
        cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("tender_session="))
        assert "secure" in {part.strip().lower() for part in cookie.split(";")[1:]}
    # Behind a proxy that ends TLS without saying so: an https public URL makes the cookie Secure too.
    saved = container.settings.public_url
    container.settings.public_url = "https://pay.example"
    try:
        async with dashboard_client(container) as client:
            r = await client.get("/dashboard/login")  # (a browser would then speak https to the proxy)
            cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("tender_login="))
            assert "secure" in {part.strip().lower() for part in cookie.split(";")[1:]}
    finally:
        container.settings.public_url = saved


async def test_the_database_keeps_only_a_hash_of_the_token(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        await sign_in(client, email)
        token = client.cookies["tender_session"]
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM dashboard_sessions WHERE id = %s", (hashlib.sha256(token.encode()).digest(),)
        )
        assert await cur.fetchone() is not None
        cur = await conn.execute("SELECT count(*) AS n FROM dashboard_sessions WHERE id = %s", (token.encode(),))
        assert (await cur.fetchone())["n"] == 0
        cur = await conn.execute("SELECT password_hash FROM dashboard_users WHERE email = %s", (email,))
        stored = (await cur.fetchone())["password_hash"]
        assert stored.startswith("$argon2id$") and PASSWORD not in stored


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        wrong = await sign_in(client, email, "not the password")
        unknown = await sign_in(client, "nobody-here@shop.example", "not the password")
        assert wrong.status_code == unknown.status_code == 401
        assert "The email or password is wrong." in wrong.text and "The email or password is wrong." in unknown.text
        assert "tender_session" not in client.cookies
        assert (await client.get("/dashboard")).status_code == 303


async def test_sign_in_is_rate_limited_per_email(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    limit = container.settings.dashboard_signin_email_failures
    async with dashboard_client(container) as client:
        for _ in range(limit):
            assert (await sign_in(client, email, "guess-guess")).status_code == 401
    async with dashboard_client(container) as other_address:
        # The right password is refused now too, from anywhere: the email is locked for the window.
        r = await sign_in(other_address, email)
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) > 0 and "Too many failed sign-ins" in r.text
        assert "tender_session" not in other_address.cookies


async def test_sign_in_is_rate_limited_per_address(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    limit = container.settings.dashboard_signin_address_failures
    async with dashboard_client(container) as client:
        for n in range(limit):
            assert (await sign_in(client, f"guess-{n}@shop.example", "guess-guess")).status_code == 401
        assert (await sign_in(client, email)).status_code == 429
    async with dashboard_client(container) as elsewhere:
        assert (await sign_in(elsewhere, email)).status_code == 303


async def test_a_post_without_the_csrf_token_does_nothing(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        # The sign-in form's own token: a POST without it (another site's form) signs nobody in.
        r = await client.post("/dashboard/login", data={"email": email, "password": PASSWORD})
        assert r.status_code == 403 and "tender_session" not in client.cookies
        await sign_in(client, email)
        home = await client.get("/dashboard")
        refused = await client.post("/dashboard/logout", data={"csrf_token": "forged"})
        assert refused.status_code == 403
        assert (await client.get("/dashboard")).status_code == 200  # still signed in
        r = await client.post("/dashboard/logout", data={"csrf_token": csrf_of(home.text)})
        assert r.status_code == 303


async def test_sign_out_ends_the_session_for_good(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        await sign_in(client, email)
        token = client.cookies["tender_session"]
        home = await client.get("/dashboard")
        r = await client.post("/dashboard/logout", data={"csrf_token": csrf_of(home.text)})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    async with dashboard_client(container) as replay:
        replay.cookies.set("tender_session", token, domain="tender.test", path="/dashboard")
        assert (await replay.get("/dashboard")).status_code == 303  # the old cookie is worth nothing


async def test_an_idle_session_times_out(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        await sign_in(client, email)
        assert (await client.get("/dashboard")).status_code == 200
        token = client.cookies["tender_session"]
        idle = container.settings.dashboard_idle_minutes
        async with container.db.connection() as conn:
            await conn.execute(
                "UPDATE dashboard_sessions SET last_seen = now() - %s WHERE id = %s",
                (timedelta(minutes=idle, seconds=1), hashlib.sha256(token.encode()).digest()),
            )
        r = await client.get("/dashboard")
        assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")


async def test_sign_in_rotates_the_session(container: Any, merchant: Any) -> None:
    """A session token the browser already carries (planted, or an earlier sign-in) is ended at sign-in and
    replaced by a fresh one."""
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as first_browser:
        await sign_in(first_browser, email)
        first = first_browser.cookies["tender_session"]
    async with dashboard_client(container) as client:
        form = await client.get("/dashboard/login")
        client.cookies.set("tender_session", first, domain="tender.test", path="/dashboard")
        r = await client.post(
            "/dashboard/login", data={"csrf_token": csrf_of(form.text), "email": email, "password": PASSWORD}
        )
        assert r.status_code == 303
        second = client.cookies["tender_session"]
        assert second != first
        assert (await client.get("/dashboard")).status_code == 200
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM dashboard_sessions WHERE id = %s", (hashlib.sha256(first.encode()).digest(),)
        )
        assert (await cur.fetchone())["n"] == 0


async def test_operators_sign_in_with_the_admin_key(container: Any, merchant: Any) -> None:
    admin_key = container.settings.admin_key.get_secret_value()
    async with dashboard_client(container) as client:
        assert (await operator_sign_in(client, "adm_wrong")).status_code == 401
        r = await operator_sign_in(client, admin_key)
        assert r.status_code == 303
        home = await client.get("/dashboard")
        assert home.status_code == 200 and "All merchants" in home.text and merchant.merchant.id in home.text
        assert "/dashboard/operator/dead-letters" in home.text
        chosen = await client.post(
            "/dashboard/merchant", data={"csrf_token": csrf_of(home.text), "merchant": merchant.merchant.id}
        )
        assert chosen.status_code == 303
        viewing = await client.get("/dashboard")
        assert viewing.status_code == 200 and f"<h1>{merchant.merchant.name}</h1>" in viewing.text
        missing = await client.post("/dashboard/merchant", data={"csrf_token": csrf_of(home.text), "merchant": "mer_x"})
        assert missing.status_code == 404


async def test_users_cannot_choose_a_merchant(container: Any, merchant: Any) -> None:
    other = await create_merchant(container.db, "Someone else")
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        await sign_in(client, email)
        home = await client.get("/dashboard")
        r = await client.post(
            "/dashboard/merchant", data={"csrf_token": csrf_of(home.text), "merchant": other.merchant.id}
        )
        assert r.status_code == 404
        home = await client.get("/dashboard")
        assert other.merchant.name not in home.text and merchant.merchant.name in home.text


async def test_create_user_refuses_a_taken_email_and_a_short_password(container: Any, merchant: Any) -> None:
    from tender.errors import InvalidRequest, NotFound

    email = await new_user(container, merchant.merchant.id)
    with pytest.raises(InvalidRequest) as taken:
        await create_user(container.db, merchant.merchant.id, email.upper(), PASSWORD)
    assert taken.value.param == "email"
    with pytest.raises(InvalidRequest) as short:
        await create_user(container.db, merchant.merchant.id, "x-" + email, "short")
    assert short.value.param == "password"
    with pytest.raises(NotFound):
        await create_user(container.db, "mer_nope", "y-" + email, PASSWORD)
    made = await create_user(container.db, merchant.merchant.id, "z-" + email)
    assert made.password is not None and len(made.password) >= 12


async def test_tender_user_create_prints_a_password_that_signs_in(
    container: Any, merchant: Any, tender_env: dict[str, str]
) -> None:
    import asyncio
    import os
    import re
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")} | tender_env

    def tender(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tender", "user", "create", *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    email = f"cli-{merchant.merchant.id[-6:].lower()}@shop.example"
    made = await asyncio.to_thread(tender, "--merchant", merchant.merchant.id, "--email", email)
    assert made.returncode == 0, made.stderr
    password = re.search(r"one-time password: (\S+)", made.stdout)
    assert password and f"of merchant {merchant.merchant.id}" in made.stdout
    async with dashboard_client(container) as client:
        assert (await sign_in(client, email, password.group(1))).status_code == 303
        r = await client.get("/dashboard")  # a one-time password: the user's own first
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/account/password"
    again = await asyncio.to_thread(
        tender, "--merchant", merchant.merchant.id, "--email", email, "--password", "x" * 12
    )
    assert again.returncode == 1 and "email" in again.stderr
    unknown = await asyncio.to_thread(tender, "--merchant", "mer_unknown", "--email", "b-" + email)
    assert unknown.returncode == 1 and "merchant" in again.stderr + unknown.stderr
    given = await asyncio.to_thread(
        tender, "--merchant", merchant.merchant.id, "--email", "c-" + email, "--password", "chosen password 1"
    )
    assert given.returncode == 0 and "one-time password" not in given.stdout


IDLE_FOR = "SELECT now() - last_seen AS idle FROM dashboard_sessions WHERE id = %s"


async def test_the_issues_panels_refresh_does_not_keep_the_session_alive(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        await sign_in(client, email)
        hashed = hashlib.sha256(client.cookies["tender_session"].encode()).digest()
        almost = timedelta(minutes=container.settings.dashboard_idle_minutes) - timedelta(seconds=30)
        async with container.db.connection() as conn:
            await conn.execute("UPDATE dashboard_sessions SET last_seen = now() - %s WHERE id = %s", (almost, hashed))
            assert (await client.get("/dashboard/issues")).status_code == 200  # still within the timeout
            cur = await conn.execute(
                "SELECT now() - last_seen AS idle FROM dashboard_sessions WHERE id = %s", (hashed,)
            )
            assert (await cur.fetchone())["idle"] >= almost  # the htmx poll did not count as activity
            assert (await client.get("/dashboard")).status_code == 200
            cur = await conn.execute(
                "SELECT now() - last_seen AS idle FROM dashboard_sessions WHERE id = %s", (hashed,)
            )
            assert (await cur.fetchone())["idle"] < timedelta(seconds=10)  # a page the user opened did


async def test_an_unknown_dashboard_page_is_a_404_page(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        away = await client.get("/dashboard/no-such-page")
        assert away.status_code == 303 and away.headers["location"].startswith("/dashboard/login")
        await sign_in(client, email)
        r = await client.get("/dashboard/no-such-page")
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        assert "There is nothing here" in r.text and 'href="/dashboard/payments"' in r.text  # with the navigation
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def test_a_printed_password_must_be_changed_before_any_page(container: Any, merchant: Any) -> None:
    made = await create_user(container.db, merchant.merchant.id, f"new-{uuid.uuid4().hex[:8]}@shop.example")
    assert made.password is not None
    email, printed = made.user.email, made.password
    async with dashboard_client(container) as other_browser, dashboard_client(container) as client:
        await sign_in(other_browser, email, printed)
        assert (await sign_in(client, email, printed)).status_code == 303
        for path in ("/dashboard", "/dashboard/payments", "/dashboard/issues"):
            r = await client.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/dashboard/account/password", path
        form = await client.get("/dashboard/account/password")
        assert form.status_code == 200 and "Choose your own password" in form.text
        token = csrf_of(form.text)

        async def change(current: str, new: str, confirm: str) -> Any:
            body = {"csrf_token": token, "current_password": current, "new_password": new, "confirm": confirm}
            return await client.post("/dashboard/account/password", data=body)

        wrong = await change("not it at all", "my own password 1", "my own password 1")
        assert wrong.status_code == 400 and "The current password is wrong." in wrong.text
        assert 'id="current_password" name="current_password"' in wrong.text and 'aria-invalid="true"' in wrong.text
        differ = await change(printed, "my own password 1", "my own password 2")
        assert differ.status_code == 400 and "The two new passwords differ." in differ.text
        short = await change(printed, "short", "short")
        assert short.status_code == 400 and "The new password must be 10 to 200 characters." in short.text
        done = await change(printed, "my own password 1", "my own password 1")
        assert done.status_code == 303 and done.headers["location"] == "/dashboard"
        assert (await client.get("/dashboard")).status_code == 200  # this session goes on
        assert (await other_browser.get("/dashboard")).status_code == 303  # the other one ended
    async with dashboard_client(container) as client:
        assert (await sign_in(client, email, printed)).status_code == 401
        assert (await sign_in(client, email, "my own password 1")).status_code == 303
        assert (await client.get("/dashboard")).status_code == 200


async def test_a_user_changes_the_password_and_operators_have_none(container: Any, merchant: Any) -> None:
    email = await new_user(container, merchant.merchant.id)
    async with dashboard_client(container) as client:
        await sign_in(client, email)
        home = await client.get("/dashboard")
        assert 'href="/dashboard/account/password"' in home.text
        body = {"csrf_token": csrf_of(home.text), "current_password": PASSWORD, "new_password": "another one 22",
                "confirm": "another one 22"}  # fmt: skip
        refused = await client.post("/dashboard/account/password", data={**body, "csrf_token": "forged"})
        assert refused.status_code == 403
        done = await client.post("/dashboard/account/password", data=body)
        assert done.status_code == 200 and "Your password is changed." in done.text
    async with dashboard_client(container) as client:
        await operator_sign_in(client, container.settings.admin_key.get_secret_value())
        assert (await client.get("/dashboard/account/password")).status_code == 404


async def test_an_htmx_refresh_after_the_session_ended_sends_the_page_to_sign_in(container: Any) -> None:
    async with dashboard_client(container) as client:
        headers = {"HX-Request": "true", "HX-Current-URL": "http://tender.test/dashboard?x=1"}
        r = await client.get("/dashboard/issues", headers=headers)
        assert r.status_code == 401 and r.headers["hx-redirect"] == "/dashboard/login?next=/dashboard"
        plain = await client.get("/dashboard/issues")
        assert plain.status_code == 303 and plain.headers["location"] == "/dashboard/login?next=/dashboard/issues"
