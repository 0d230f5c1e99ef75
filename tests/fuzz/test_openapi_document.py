"""The OpenAPI document as the fuzzer reads it: a request body whose schema does not resolve is silently
dropped by Schemathesis (it sends no body at all), so that operation's input would never be fuzzed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fuzz.schema import load, openapi_document, operations

pytestmark = pytest.mark.fuzz


def refs(node: Any, at: str = "#") -> Iterator[tuple[str, str]]:
    """(where, target) of every `$ref` in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield at, value
            else:
                yield from refs(value, f"{at}/{str(key).replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, f"{at}/{i}")


def resolves(document: dict[str, Any], ref: str) -> bool:
    if not ref.startswith("#/"):
        return False  # the document is self-contained: no other files, no URLs
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_ref_in_the_document_resolves() -> None:
    document = openapi_document()
    # A model's own `$defs` (pydantic's model_json_schema()) are relative to the model's schema, but in an
    # OpenAPI document `#/...` means the document's root: such refs dangle.
    dangling = sorted((target, where) for where, target in refs(document) if not resolves(document, target))
    assert dangling == [], "refs that point nowhere (target, where):\n" + "\n".join(map(str, dangling))


def test_every_declared_request_body_reaches_the_fuzzer() -> None:
    document = openapi_document()
    declared = {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    fuzzed = {op.label for op in operations(load()) if list(op.body)}
    assert sorted(declared - fuzzed) == []
