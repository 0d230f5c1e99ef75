"""The `Prefer` request header (RFC 7240), of which Tender honours `wait=N`.

    Prefer: respond-async, wait=10
    Prefer: WAIT = "5"; some-parameter

Names are case-insensitive, several preferences may share a header (comma-separated) or come in several
headers, a preference may carry `;` parameters (ignored here), and a value may be a quoted string. Only the
first occurrence of a preference counts (RFC 7240 section 2). Anything Tender does not understand,
including an invalid `wait` value, is ignored as the RFC asks: the request is served without waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

MAX_WAIT_SECONDS = 30

PREFER_DESCRIPTION = (
    "RFC 7240 preferences. `wait=N` (seconds, at most 30; a larger value is capped): if the payment is "
    "`processing`, hold the answer until its status changes or N seconds pass, then answer with the payment "
    "as it is then and the header `Preference-Applied: wait=N`. Unknown or invalid preferences are ignored."
)
PREFERENCE_APPLIED_HEADER = {
    "Preference-Applied": {
        "description": "`wait=N` when a `Prefer: wait` was honoured (N as applied, after capping at 30).",
        "schema": {"type": "string", "example": "wait=10"},
    }
}


def _split(text: str, separator: str) -> Iterator[str]:
    """Split on `separator` outside double-quoted strings (which may contain backslash escapes)."""
    start, quoted, escaped = 0, False, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            yield text[start:i]
            start = i + 1
    yield text[start:]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out, escaped = [], False
        for char in inner:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def preferences(headers: Iterable[str]) -> dict[str, str | None]:
    """Preference name (lower-case) -> its value (None when it has none); the first occurrence wins."""
    found: dict[str, str | None] = {}
    for header in headers:
        for item in _split(header, ","):
            head = next(_split(item, ";")).strip()
            if not head:
                continue
            name, eq, value = head.partition("=")
            name = name.strip().lower()
            if name and name not in found:
                found[name] = _unquote(value.strip()) if eq else None
    return found


def wait_seconds(headers: Iterable[str]) -> int | None:
    """The `wait` preference as the seconds to apply (capped at MAX_WAIT_SECONDS), or None if there is none
    or it is not a non-negative integer."""
    value = preferences(headers).get("wait")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    digits = value.lstrip("0") or "0"
    if len(digits) > 6:  # also keeps int() away from Python's limit on huge digit strings
        return MAX_WAIT_SECONDS
    return min(int(digits), MAX_WAIT_SECONDS)
