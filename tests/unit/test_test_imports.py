"""Test modules share code through `tests.helpers` only: a test that imports another test module (or a conftest)
couples the two, runs the other's module-level code, and breaks when that one is moved or renamed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _absolute(node: ast.ImportFrom, module: str) -> str:
    """The module an import-from names, with a relative import resolved against the importing module."""
    if not node.level:
        return node.module or ""
    package = module.split(".")[: -node.level]
    return ".".join([*package, *([node.module] if node.module else [])])


def _named_test(name: str) -> bool:
    return any(p.startswith("test_") or p == "conftest" for p in name.split("."))


def _outside_helpers(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and len(parts) > 1 and parts[1] != "helpers"


def imports_of_test_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a test module in `source` (of `module`, against which relative imports
    resolve)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            # `from tests import conftest` imports a module, `from tests.helpers import x` a name of a package.
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        # The module itself where its name says so (`tests.unit.test_b`, `tests.conftest`), else a module of
        # `tests` that is not part of its helpers (`tests.unit.shared.x`).
        hit = next((n for n in names if _named_test(n)), None) or next((n for n in names if _outside_helpers(n)), None)
        if hit:
            found.append((node.lineno, hit))
    return found


def _python_files() -> list[Path]:
    return sorted(p for top in ("tests", "examples") for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts)


def test_no_test_module_imports_another() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name} (move what it shares into tests/helpers/)"
        for path in _python_files()
        for line, name in imports_of_test_modules(path.read_text(encoding="utf-8"), _module_of(path))
    ]
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize(
    ("source", "module", "found"),
    [
        ("from tests.helpers import eventually", "tests.unit.test_a", []),
        ("from tests.helpers.bus import publish", "tests.unit.test_a", []),
        ("import tests.helpers.bus", "tests.unit.test_a", []),
        ("from tests.conftest import eventually", "tests.unit.test_a", [(1, "tests.conftest")]),
        ("from tests.unit.test_b import x", "tests.unit.test_a", [(1, "tests.unit.test_b")]),
        ("import tests.unit.test_b", "tests.unit.test_a", [(1, "tests.unit.test_b")]),
        ("from tests import conftest", "tests.unit.test_a", [(1, "tests.conftest")]),
        ("from tests.unit import test_b", "tests.unit.test_a", [(1, "tests.unit.test_b")]),
        ("from .test_b import x", "tests.unit.test_a", [(1, "tests.unit.test_b")]),
        ("from . import test_b", "tests.unit.test_a", [(1, "tests.unit.test_b")]),
        ("from examples.department_case_system.service import App", "examples.department_case_system.tests.test_a", []),
        ("from tests.unit.shared import x", "tests.unit.test_a", [(1, "tests.unit.shared")]),
        ("from ..helpers import eventually", "tests.unit.test_a", []),
        ("from tests.helpers_old import x", "tests.unit.test_a", [(1, "tests.helpers_old")]),
        ("def f():\n    from tests.e2e.test_b import x", "tests.unit.test_a", [(2, "tests.e2e.test_b")]),
        (
            "from examples.department.tests.test_b import x",
            "examples.department.tests.test_a",
            [(1, "examples.department.tests.test_b")],
        ),
        ("from xiuhua.testing import embedded_xiuhua", "tests.unit.test_a", []),
    ],
)
def test_the_check_tells_shared_helpers_from_test_modules(
    source: str, module: str, found: list[tuple[int, str]]
) -> None:
    assert imports_of_test_modules(source, module) == found
