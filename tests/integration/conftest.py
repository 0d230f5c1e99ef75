"""Fixtures of the integration tests beyond the session's (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """localstripe, the Stripe emulator, as its own process for the whole session (tests/support/localstripe.py)."""
    from tests.support.localstripe import running_localstripe

    with running_localstripe() as url:
        yield url


@pytest.fixture(scope="module")
async def stripe_container(settings: Any, container: Any, localstripe_url: str) -> AsyncIterator[Any]:
    """Tender configured for Stripe (TENDER_STRIPE_* pointing at localstripe), on the session's database; the
    simulator stays on and stays the default. A module needing another configuration defines its own."""
    from tender.bootstrap import build
    from tender.processors.stripe import StripeProcessor
    from tests.support.localstripe import KEY

    configured = settings.model_copy(update={"stripe_secret_key": SecretStr(KEY), "stripe_api_base": localstripe_url})
    c = build(configured, configured.database_url)
    assert isinstance(c.processors["stripe"], StripeProcessor)  # built from the settings by the registry
    c.processors = {**container.processors, "stripe": c.processors["stripe"]}
    await c.open()
    yield c
    await c.processors["stripe"].aclose()
    await c.db.close()


@pytest.fixture(scope="module")
async def sapi(stripe_container: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The API over `stripe_container`, in process."""
    from tender.api.app import create_app

    app = create_app(stripe_container)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tender.test") as client:
        yield client
