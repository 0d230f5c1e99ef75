"""Every error code is a class (tender/errors.py, tender/domain/errors.py), raised by class, and routes'
OpenAPI `responses=` are built from those classes (api/openapi.responses)."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest

from tender import errors
from tender.api.app import create_app
from tender.api.openapi import responses
from tender.bootstrap import build
from tender.config import Settings
from tender.domain.errors import DomainError, InvalidCvc, InvalidTransition
from tender.errors import (
    AmountTooLarge,
    DomainRuleViolated,
    DuplicateReference,
    InvalidRequest,
    NotFound,
    RateLimited,
    TenderError,
    TooManyDeclines,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "tender"


def subclasses(root: type) -> list[type]:
    found: list[type] = []
    pending = [root]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


def error_classes() -> list[type[TenderError]]:
    return [TenderError, *(c for c in subclasses(TenderError) if c.__module__ == errors.__name__)]


def test_each_code_is_one_documented_class() -> None:
    fixed = [c for c in error_classes() if c.code]
    codes = [(c.status_code, c.code) for c in fixed]
    # resource_missing is both the 404 of a path's object and the 400 of a parameter naming none.
    assert len(codes) == len(set(codes)), sorted(codes)
    for cls in error_classes():
        assert cls.__doc__ and cls.__doc__.strip(), f"{cls.__name__} says nothing of its code"
        assert 400 <= cls.status_code < 600
        assert re.fullmatch(r"[a-z_]*", cls.code)


def test_no_raise_site_passes_a_code() -> None:
    """A code is the class raised, never `code="..."` at a raise site (the simulator is a service apart)."""
    names = {c.__name__ for c in [*error_classes(), DomainError, *subclasses(DomainError)]}
    offenders = []
    for path in SRC.rglob("*.py"):
        if "simulator" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            called = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
            if called and any(k.arg == "code" for k in node.keywords):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


def test_bodies_are_api_md_s() -> None:
    error = AmountTooLarge("amount: cannot exceed the authorized amount (2500)", param="amount")
    assert (error.status_code, isinstance(error, InvalidRequest)) == (400, True)
    assert error.body() == {
        "error": {
            "type": "invalid_request_error",
            "code": "amount_too_large",
            "message": "amount: cannot exceed the authorized amount (2500)",
            "param": "amount",
        }
    }
    taken = DuplicateReference("taken", param="reference", payment="pay_1").body()["error"]
    assert (taken["code"], taken["payment"]) == ("duplicate_reference", "pay_1")
    limited = TooManyDeclines("slow down", retry_after=0)
    assert (limited.status_code, limited.body()["error"]["type"], limited.headers()) == (
        429,
        "rate_limit_error",
        {"Retry-After": "1"},
    )


def test_a_domain_rule_is_answered_with_its_own_code() -> None:
    cvc = DomainRuleViolated(InvalidCvc("payment_method.card.cvc must be 3 digits", param="payment_method.card.cvc"))
    assert cvc.body()["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_cvc",
        "message": "payment_method.card.cvc must be 3 digits",
        "param": "payment_method.card.cvc",
    }
    moved = DomainRuleViolated(InvalidTransition("no"))
    assert (moved.code, moved.param) == ("payment_unexpected_state", None)


def test_responses_lists_each_class_under_its_status() -> None:
    documented = responses(InvalidRequest, AmountTooLarge, NotFound, TooManyDeclines, NotFound)
    assert sorted(documented) == [400, 404, 429]
    assert documented[400]["description"].splitlines() == [
        "- `parameter_invalid`: A parameter is invalid; `param` names it.",
        "- `amount_too_large`: `amount` is more than the payment allows: its authorized amount, or what is left"
        " to refund.",
    ]
    assert documented[404] == {
        "description": "`resource_missing`: No such object (or another merchant's), or no such route."
    }
    assert "Retry-After" in documented[429]["headers"]
    assert "headers" not in documented[400]
    assert issubclass(TooManyDeclines, RateLimited)


@pytest.fixture(scope="module")
def document() -> dict[str, object]:
    settings = Settings(database_url="postgresql://nobody@127.0.0.1/none", vault_key="A" * 43 + "=")
    app = create_app(build(settings, "postgresql://nobody@127.0.0.1/none"))  # opens no connection
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return app.openapi()


def test_every_error_response_in_the_document_comes_from_the_classes(document: dict[str, object]) -> None:
    said = {responses(cls)[cls.status_code]["description"] for cls in error_classes()}
    paths = document["paths"]
    assert isinstance(paths, dict)
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) < 400 or answer["description"] == "Validation Error":  # FastAPI's own 422
                    continue
                lines = [line.removeprefix("- ") for line in answer["description"].splitlines()]
                assert set(lines) <= said, (method, path, status, lines)


def test_create_payment_documents_its_codes(document: dict[str, object]) -> None:
    answers = document["paths"]["/v1/payments"]["post"]["responses"]  # type: ignore[index]
    text = " ".join(a["description"] for a in answers.values())
    for code in (
        "parameter_missing",
        "invalid_cvc",
        "duplicate_reference",
        "idempotency_key_reused",
        "too_many_declines",
    ):
        assert f"`{code}`" in text
    assert "Retry-After" in answers["429"]["headers"]
    assert "`missing_api_key`" in answers["401"]["description"]
