"""Turning pydantic's validation errors into one clear 400 that names the field, and the checks every
request's text gets whatever the route (no NUL character, bounded nesting).

Messages never quote an input value: it may be a card number. Even a field *name* taken from the request
(a metadata key, an unknown parameter) is shown only when it looks like a name (domain.errors.is_shown_name).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tender.domain.errors import is_shown_name
from tender.errors import InvalidCharacter, InvalidRequest, ParameterMissing, ParameterUnknown

M = TypeVar("M", bound=BaseModel)

# Deeper than any body of the API needs; orjson refuses to write past 254 levels and Python to recurse
# past about 1000, so a deeper body would otherwise fail later with a 500.
MAX_JSON_DEPTH = 32
NUL = "\x00"


def param_name(loc: tuple[int | str, ...], prefix: str | None = None) -> str:
    """`a.b[2].c`; a part that is not a shown name ends the path there (the error names its parent)."""
    parts = [prefix] if prefix else []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        elif is_shown_name(part):
            parts.append(part)
        else:
            break
    return ".".join(parts)


def _is_branch(part: str) -> bool:
    return "[" in part or part in {"str", "int"} or part.startswith("constrained-")


def error_from(detail: ErrorDetails, prefix: str | None = None) -> InvalidRequest:
    # Pydantic adds union-branch names (e.g. "str", "dict[str,any]") to locations; they mean nothing to clients.
    loc = tuple(p for p in detail["loc"] if not (isinstance(p, str) and _is_branch(p)))
    param = param_name(loc, prefix) or "body"
    kind = detail["type"]
    if kind == "missing":
        message = f"Missing required parameter: {param}"
        return ParameterMissing(message, param=param)
    if kind == "extra_forbidden":
        return ParameterUnknown(f"Received unknown parameter: {param}", param=param)
    if kind == "union_tag_invalid":  # pydantic's message quotes the tag sent
        return InvalidRequest(f"{param}: unknown type", param=param)
    # Never the input value in the message: it may be a card number.
    return InvalidRequest(f"{param}: {detail['msg']}", param=param)


def parse(model: type[M], data: Any, *, prefix: str | None = None) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error_from(exc.errors(include_input=False)[0], prefix) from None


def check_json(value: object, prefix: str = "body") -> None:
    """Refuse (400 naming the field) a NUL character in any string or key of a parsed JSON value, and
    nesting deeper than MAX_JSON_DEPTH. PostgreSQL cannot store a NUL in text or jsonb."""
    stack: list[tuple[object, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if len(loc) > MAX_JSON_DEPTH:
            param = param_name(loc[:MAX_JSON_DEPTH]) or prefix
            raise InvalidRequest(f"{param}: nested more than {MAX_JSON_DEPTH} levels deep", param=param)
        if isinstance(item, str):
            if NUL in item:
                raise nul_error(param_name(loc) or prefix)
        elif isinstance(item, dict):
            for key, child in item.items():
                if NUL in key:
                    raise nul_error(param_name(loc) or prefix)
                stack.append((child, (*loc, key)))
        elif isinstance(item, list):
            stack.extend((child, (*loc, i)) for i, child in enumerate(item))


def nul_error(param: str) -> InvalidCharacter:
    return InvalidCharacter(f"{param}: must not contain a NUL character", param=param)
