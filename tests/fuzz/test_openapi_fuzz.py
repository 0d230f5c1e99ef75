"""Schemathesis against the app's own OpenAPI (issue 11, "Also": zero 5xx, every operation reachable).

Every operation of the document is fuzzed with valid and invalid input under a fixed seed, authenticated as
a real merchant (/v1) or the operator (/admin/v1, /metrics), with real ids mixed into its parameters. Any
5xx fails the operation's case; afterwards every operation must have got past authentication and look-up
at least once. `make fuzz` runs this; the default `pytest` run leaves it out (marker `fuzz`).
"""

from __future__ import annotations

from typing import Any

import pytest
from schemathesis import Case
from schemathesis.checks import not_a_server_error

from tests.support.fuzz.report import TABLE, TURNED_AWAY
from tests.support.fuzz.schema import REQUEST_TIMEOUT, load, operations
from tests.support.fuzz.stack import ServedStack
from tests.support.fuzz.world import World

pytestmark = pytest.mark.fuzz

schema = load()
TABLE.operations = [op.label for op in operations(schema)]


def credentials(path: str, world: World) -> dict[str, str]:
    if path.startswith("/v1/"):
        return {"Authorization": f"Bearer {world.secret_key}"}
    if path.startswith("/admin/") or path == "/metrics":
        return {"Authorization": f"Bearer {world.admin_key}"}
    return {}


@schema.parametrize()
def test_no_operation_answers_a_server_error(case: Case[Any], fuzz_stack: ServedStack, world: World) -> None:
    headers = credentials(case.operation.path, world)
    response = case.call(base_url=fuzz_stack.api_url, headers=headers, timeout=REQUEST_TIMEOUT)
    TABLE.record(case.operation.label, response.status_code, response.content)
    case.validate_response(response, checks=[not_a_server_error])


def test_every_operation_got_past_authentication_and_look_ups() -> None:
    """Runs after the fuzzing above (file order): an operation that only ever answered 401, 403 or 404 was
    not fuzzed at all, whatever the first test says."""
    if not TABLE.seen:
        pytest.skip("the fuzzing test did not run in this session")
    unreached = {label: dict(TABLE.seen.get(label, {})) for label in TABLE.operations if not TABLE.reached(label)}
    assert unreached == {}, f"only {sorted(TURNED_AWAY)} (or nothing) for: {unreached}"
