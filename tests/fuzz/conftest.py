"""The fuzzing session: the app served from its own thread on the session's real PostgreSQL, a world of real
objects for the schema's hooks to feed into generated requests (tests/fuzz/mapping.py), and the table of
status codes seen, printed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fuzz import mapping
from tests.support.fuzz.report import TABLE
from tests.support.fuzz.stack import ServedStack
from tests.support.fuzz.world import World, seed


@pytest.fixture(scope="session")
def fuzz_stack(settings: Any) -> Iterator[ServedStack]:
    stack = ServedStack()
    try:
        stack.start(settings)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def world(fuzz_stack: ServedStack, settings: Any) -> World:
    assert fuzz_stack.container is not None
    admin_key = settings.admin_key.get_secret_value()
    made = fuzz_stack.run(seed(fuzz_stack.api_url, fuzz_stack.simulator_url, fuzz_stack.container, admin_key))
    mapping.CURRENT.world = made
    return made


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TABLE.seen:
        return
    terminalreporter.section("status codes the fuzzer saw, per operation")
    for line in TABLE.lines(sorted(set(TABLE.operations) | set(TABLE.seen))):
        terminalreporter.write_line(line)
