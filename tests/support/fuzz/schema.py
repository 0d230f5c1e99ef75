"""The app's own OpenAPI document, loaded into Schemathesis with a fixed seed and bounded examples.

Built at import from `create_app` (no connection is opened), because pytest collects one test per operation
before any fixture runs; the cases are sent to the app served by the `fuzz_stack` fixture.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import APIOperation, BaseSchema
from schemathesis.core.result import Ok

from tests.support.fuzz.mapping import install_hooks

SEED = 20251111
# Per operation, in the fuzzing phase; the examples and coverage phases add their own (deterministic) cases.
MAX_EXAMPLES = 50
REQUEST_TIMEOUT = 20.0  # seconds: a hang fails its case instead of stalling the run


def openapi_document() -> dict[str, Any]:
    from tender.api.app import create_app
    from tender.bootstrap import build
    from tender.config import Settings

    nowhere = "postgresql://nobody@127.0.0.1/none"
    return create_app(build(Settings(database_url=nowhere, vault_key="A" * 43 + "="), nowhere)).openapi()


def config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["all"],
            "generation": {
                "mode": "all",  # valid and invalid input alike: neither may give a 5xx
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,  # Hypothesis' derandomize: the same cases on every run
                "database": "none",
                "no-shrink": True,  # report a failure as found; shrinking would cost minutes of requests
            },
            "request-timeout": REQUEST_TIMEOUT,
            # Operations whose successes nobody cleans up get a few cases (no thousands of merchants). One
            # `include-name` per entry: several include-* keys in one entry match any of them, not all.
            "operations": [{"include-name": "POST /admin/v1/merchants", "generation": {"max-examples": 3}}],
        }
    )


def load() -> BaseSchema:
    schema = schemathesis.openapi.from_dict(openapi_document(), config=config())
    install_hooks(schema)
    return schema


def operations(schema: BaseSchema) -> list[APIOperation[Any, Any, Any, Any]]:
    found = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise result.err()  # a document Schemathesis cannot read is a failure, not a smaller fuzz
        found.append(result.ok())
    return found
