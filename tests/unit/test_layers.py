"""The layers hold (issue 12 items 5 and 6): pyproject.toml's import contracts are kept, and no entry point
but the worker opens a connection or a transaction (the services own their units of work)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "tender"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# Every entry point but the worker, whose batch pump opens a batch's claim and write-back (worker/__init__.py).
ENTRY_POINTS = ("api", "web", "http", "cli.py", "devserver.py")


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_import_contracts_are_kept() -> None:
    result = _lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_contract_is_checked_against_tenders_real_imports(tmp_path: Path) -> None:
    """Not a vacuous pass: domain placed above services is refused, since services import domain."""
    config = tmp_path / ".importlinter"
    config.write_text(
        "[importlinter]\nroot_package = tender\n\n"
        "[importlinter:contract:upside-down]\nname = upside down\ntype = layers\n"
        "layers =\n    tender.domain\n    tender.services\n"
    )
    result = _lint(str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "tender.services is not allowed to import tender.domain" in result.stdout


def _opens(source: str) -> Iterator[tuple[int, str]]:
    """Each call of a `.transaction(...)` or `.connection(...)` method: the database's, a pool's or a Conn's."""
    for node in ast.walk(ast.parse(source)):
        call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        if call and node.func.attr in ("transaction", "connection"):
            yield node.lineno, node.func.attr


def test_the_scan_finds_a_route_that_opens_its_own_unit_of_work() -> None:
    route = (
        "async def route(container):\n"
        "    async with container.db.connection() as conn:\n"
        "        async with conn.transaction():\n"
        "            pass\n"
    )
    assert list(_opens(route)) == [(2, "connection"), (3, "transaction")]


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_no_entry_point_opens_a_connection_or_a_transaction(entry_point: str) -> None:
    root = SRC / entry_point
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    assert files
    opened = [f"{path.relative_to(SRC)}:{line} .{name}()" for path in files for line, name in _opens(path.read_text())]
    assert opened == [], "a service entry point opens the unit of work (services/__init__.py)"
