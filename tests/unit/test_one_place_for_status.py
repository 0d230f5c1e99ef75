"""A payment's status changes in one place: services/payment_transitions.py is the only caller of the SQL that
writes `payments.status`, and that SQL lives only in store/payments.py (issue 12 item 1). A new path that
writes a status by itself (and so forgets the events, the money or the CVC) fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tender

SRC = Path(tender.__file__).parent
STATUS_WRITERS = {"update_after_processing", "apply_change"}  # store/payments.py's status-writing functions
# `status =` in the SET list of an UPDATE of payments (not in its WHERE, where a guard reads it).
WRITES_STATUS = re.compile(
    r"UPDATE\s+payments\b(?:(?!\bWHERE\b)[^;])*?\bSET\b(?:(?!\bWHERE\b)[^;])*?\bstatus\s*=", re.IGNORECASE | re.DOTALL
)


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text() for p in sorted(SRC.rglob("*.py")) if "migrations" not in p.parts}


def test_only_store_payments_has_sql_that_writes_a_payments_status() -> None:
    writers = sorted(name for name, text in _sources().items() if WRITES_STATUS.search(text))
    assert writers == ["store/payments.py"]
    found = WRITES_STATUS.findall(_sources()["store/payments.py"])
    assert len(found) == 2, found  # one per function in STATUS_WRITERS


def test_only_payment_transitions_calls_it() -> None:
    callers: dict[str, set[str]] = {}
    for name, text in _sources().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                if called in STATUS_WRITERS:
                    callers.setdefault(name, set()).add(called)
    assert callers == {"services/payment_transitions.py": STATUS_WRITERS}
