"""Turning pydantic's validation errors into one clear 400 that names the field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tender.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def param_name(loc: tuple[int | str, ...], prefix: str | None = None) -> str:
    parts = [prefix] if prefix else []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        else:
            parts.append(part)
    return ".".join(parts)


def error_from(detail: ErrorDetails, prefix: str | None = None) -> InvalidRequest:
    # Pydantic adds union-branch names (e.g. "str", "dict[str,any]") to locations; they mean nothing to clients.
    loc = tuple(p for p in detail["loc"] if not (isinstance(p, str) and ("[" in p or p in {"str", "int"})))
    param = param_name(loc, prefix) or "body"
    kind = detail["type"]
    if kind == "missing":
        message = f"Missing required parameter: {param}"
        return InvalidRequest(message, param=param, code="parameter_missing")
    if kind == "extra_forbidden":
        return InvalidRequest(f"Received unknown parameter: {param}", param=param, code="parameter_unknown")
    # Never the input value in the message: it may be a card number.
    return InvalidRequest(f"{param}: {detail['msg']}", param=param)


def parse(model: type[M], data: Any, *, prefix: str | None = None) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error_from(exc.errors(include_input=False)[0], prefix) from None
