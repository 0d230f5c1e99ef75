"""The fault tests' own database each, and their figures in pytest's final summary, shown with or without `-s`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.databases import fresh_database
from tests.support.faults import FIGURES_PROPERTY


@pytest.fixture
def tender_env(tender_env: dict[str, str], pg_server_url: str) -> Iterator[dict[str, str]]:
    """The session's environment on a database of the test's own: its workers claim only its rows (the session's
    database holds what other tests left processing, which they used to charge too), and its ledger check and
    figures cover only its own money."""
    with fresh_database(pg_server_url, "tender_fault") as url:
        yield {**tender_env, "TENDER_DATABASE_URL": url}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = []
    for category in ("passed", "failed"):
        for report in terminalreporter.stats.get(category, []):
            for name, value in getattr(report, "user_properties", []):
                if name == FIGURES_PROPERTY and getattr(report, "when", "call") == "call":
                    lines.append(f"{report.nodeid.rsplit('::', 1)[-1]} ({category}): {json.dumps(value)}")
    if lines:
        terminalreporter.section("fault test figures")
        for line in lines:
            terminalreporter.write_line(line)
