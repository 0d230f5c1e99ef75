"""Fixtures of the integration tests beyond the session's (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """localstripe, the Stripe emulator, as its own process for the whole session (tests/support/localstripe.py)."""
    from tests.support.localstripe import running_localstripe

    with running_localstripe() as url:
        yield url
