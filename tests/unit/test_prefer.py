"""Parsing the Prefer header (RFC 7240) for `wait=N`."""

from __future__ import annotations

import pytest

from tender.api.prefer import MAX_WAIT_SECONDS, preferences, wait_seconds


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (["wait=10"], 10),
        (["wait=0"], 0),
        (["WAIT=7"], 7),
        (["Wait = 7"], 7),
        (["respond-async, wait=10"], 10),
        (["respond-async,wait=3,handling=lenient"], 3),
        (["return=minimal", "wait=4"], 4),  # several Prefer headers
        (['wait="5"'], 5),  # a quoted-string value
        (["wait=5; some-param=1"], 5),  # parameters are ignored
        (['foo="a, wait=9", wait=2'], 2),  # a comma inside quotes does not split
        (["wait=007"], 7),
        (["wait=30"], 30),
        (["wait=31"], MAX_WAIT_SECONDS),
        (["wait=999"], MAX_WAIT_SECONDS),
        (["wait=" + "9" * 5000], MAX_WAIT_SECONDS),
        (["wait=1, wait=20"], 1),  # only the first occurrence counts (RFC 7240 section 2)
        (["wait=1", "wait=20"], 1),
    ],
)
def test_wait_is_read(headers: list[str], expected: int) -> None:
    assert wait_seconds(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [""],
        ["respond-async"],
        ["return=minimal"],
        ["wait"],
        ["wait="],
        ["wait=abc"],
        ["wait=-1"],
        ["wait=+5"],
        ["wait=1.5"],
        ["wait=5s"],
        ["wait=5 5"],
        ["wait=\u0665"],  # a non-ASCII digit
        ["wait=abc, wait=5"],  # the first occurrence is invalid: the preference is ignored
        ["waiting=5"],
    ],
)
def test_invalid_or_missing_wait_is_ignored(headers: list[str]) -> None:
    assert wait_seconds(headers) is None


def test_preferences_lowercase_names_and_unquote_values() -> None:
    assert preferences(['Respond-Async, Return="min\\"imal"; x=1', "HANDLING=strict"]) == {
        "respond-async": None,
        "return": 'min"imal',
        "handling": "strict",
    }
