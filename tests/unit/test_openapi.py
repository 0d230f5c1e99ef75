"""The OpenAPI document: every operation has its own id (client generators key methods by it)."""

from __future__ import annotations

import warnings
from collections import Counter

from tender.api.app import create_app
from tender.bootstrap import build
from tender.config import Settings


def test_operation_ids_are_unique_and_the_document_builds_without_warnings() -> None:
    settings = Settings(database_url="postgresql://nobody@127.0.0.1/none", vault_key="A" * 43 + "=")
    app = create_app(build(settings, "postgresql://nobody@127.0.0.1/none"))  # opens no connection
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = app.openapi()
    ids = Counter(op["operationId"] for path in spec["paths"].values() for op in path.values())
    assert [i for i, n in ids.items() if n > 1] == []
    assert {"post", "patch"} <= set(spec["paths"]["/v1/webhook_endpoints/{endpoint_id}"])
    assert "/checkout/{session_id}" not in spec["paths"]  # the shopper's pages are not API
