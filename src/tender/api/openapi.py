"""The OpenAPI document's parts that routes declare themselves: request body schemas for routes that read
their body themselves (`openapi_extra`), and `responses=` built from the error classes a route can raise."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel

from tender.errors import (
    AdminDisabled,
    AuthenticationFailed,
    IdempotencyInProgress,
    IdempotencyMismatch,
    InvalidCharacter,
    InvalidJson,
    InvalidRequest,
    MissingApiKey,
    ParameterMissing,
    ParameterUnknown,
    RateLimited,
    SecretKeyRequired,
    ServiceUnavailable,
    TenderError,
)

_DEFS = "#/$defs/"
RETRY_AFTER_HEADER = {"Retry-After": {"description": "Seconds until a try can pass.", "schema": {"type": "integer"}}}
# What a route's key dependency answers (api/deps.py): a merchant's secret key, or the operator's admin key.
MERCHANT_KEY = (MissingApiKey, AuthenticationFailed, SecretKeyRequired)
OPERATOR_KEY = (MissingApiKey, AuthenticationFailed, AdminDisabled)
# What reading a JSON body answers (api/deps.json_body, then services/validation.parse).
JSON_BODY = (InvalidRequest, ParameterMissing, ParameterUnknown, InvalidCharacter, InvalidJson)
# What an `Idempotency-Key` answers (services/idempotency.py).
IDEMPOTENT = (IdempotencyInProgress, IdempotencyMismatch)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its nested models inlined.

    pydantic refers to a nested model as `#/$defs/Name`, relative to the model's own schema; inside the
    OpenAPI document `#/` is the document's root, which has no `$defs`, so such a ref points nowhere and
    clients (and the fuzzer: tests/fuzz) cannot see the body at all.
    """
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS):
            name = ref.removeprefix(_DEFS)
            if name in seen:
                raise ValueError(f"{model.__name__}: {name} is recursive and cannot be inlined")
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return inline({**defs[name], **rest}, (*seen, name))
        return {key: inline(value, seen) for key, value in node.items()}

    inlined: dict[str, Any] = inline(schema, ())
    return inlined


def responses(*errors: type[TenderError]) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI `responses=` for the errors it can answer: one entry per status, listing the code of
    each error class and the first paragraph of its docstring (tender/errors.py says what each code means)."""
    by_status: dict[int, list[type[TenderError]]] = {}
    for error in errors:
        listed = by_status.setdefault(error.status_code, [])
        if error not in listed:
            listed.append(error)
    documented: dict[int | str, dict[str, Any]] = {}
    for status in sorted(by_status):
        lines = [_line(error) for error in by_status[status]]
        entry: dict[str, Any] = {"description": lines[0] if len(lines) == 1 else "\n".join(f"- {x}" for x in lines)}
        if any(issubclass(e, RateLimited | ServiceUnavailable) for e in by_status[status]):
            entry["headers"] = RETRY_AFTER_HEADER
        documented[status] = entry
    return documented


def _line(error: type[TenderError]) -> str:
    said = " ".join((inspect.getdoc(error) or "").split("\n\n", 1)[0].split())
    return f"`{error.code}`: {said}" if error.code else said
