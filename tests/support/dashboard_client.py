"""The dashboard over HTTP without a browser: a client per test on the in-process app (its own cookie jar and
its own client address, so one test's sign-in failures never count against another's), and signing in."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tender.api.app import create_app

_addresses = itertools.count(1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"


@asynccontextmanager
async def dashboard_client(container: Any, *, https: bool = False) -> AsyncIterator[httpx.AsyncClient]:
    n = next(_addresses)
    transport = httpx.ASGITransport(app=create_app(container), client=(f"10.17.{n // 250}.{n % 250 + 1}", 40000))
    base = "https://tender.test" if https else "http://tender.test"
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        yield client


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def new_user(container: Any, merchant_id: str, password: str = PASSWORD) -> str:
    """A dashboard user of the merchant; returns its email."""
    from tender.services.dashboard_users import create_user

    email = f"staff-{uuid.uuid4().hex[:8]}@shop.example"
    await create_user(container.db, merchant_id, email, password)
    return email


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    """The sign-in form, then its POST; returns the POST's answer (303 to the dashboard when it worked)."""
    form = await client.get("/dashboard/login")
    assert form.status_code == 200, form.text
    return await client.post(
        "/dashboard/login", data={"csrf_token": csrf_of(form.text), "email": email, "password": password}
    )


async def operator_sign_in(client: httpx.AsyncClient, admin_key: str) -> httpx.Response:
    form = await client.get("/dashboard/login")
    return await client.post("/dashboard/login", data={"csrf_token": csrf_of(form.text), "admin_key": admin_key})
