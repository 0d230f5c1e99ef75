"""The tests' own layout (tests/support/__init__.py): a test module imports only tests.support.* of the tests,
never another test module or a conftest, and conftest.py files define fixtures and hooks, not helpers."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _is_fixture(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr in ("fixture", "hookimpl"):
            return True
    return False


def test_only_tests_support_is_imported() -> None:
    offenders = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.split(".")[0] == "tests" and not name.startswith("tests.support"):
                    offenders.append(f"{path.relative_to(TESTS)}:{node.lineno} imports {name}")
    assert offenders == []


def test_conftest_files_define_fixtures_and_hooks_only() -> None:
    helpers = []
    for path in TESTS.rglob("conftest.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) or (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and not (_is_fixture(node) or node.name.startswith(("pytest_", "_")))
            ):
                helpers.append(f"{path.relative_to(TESTS)}: {node.name}")
    assert helpers == [], "helpers belong in tests/support/"


def test_support_holds_no_tests() -> None:
    assert [p.name for p in (TESTS / "support").rglob("test_*.py")] == []


def test_test_modules_have_unique_basenames() -> None:
    """Some test folders have no __init__.py, so pytest imports their modules by basename: two test_x.py in
    different folders stop the whole collection ("import file mismatch")."""
    seen: dict[str, list[str]] = {}
    for path in TESTS.rglob("test_*.py"):
        seen.setdefault(path.name, []).append(str(path.relative_to(TESTS)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
