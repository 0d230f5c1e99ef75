"""Request body schemas for routes that read their body themselves and declare it in `openapi_extra`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DEFS = "#/$defs/"


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
