"""The runtime (`xiuhua`) and the contracts stand apart from what is built on them: neither imports the services
nor the tools (`xiuhua_tools`), and the tools reach the services through their public names only."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# `python -m xiuhua` runs this module; nothing imports it, so the runtime does not depend on the CLI it starts.
ENTRY_POINTS = {"xiuhua/__main__.py"}
ABOVE_THE_RUNTIME = ("services", "xiuhua_tools")


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module a file imports, relative imports resolved, names imported from a
    module included (`from a import b` gives `a` and `a.b`)."""
    package = ".".join(path.relative_to(ROOT).parent.parts)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def rule_breaks(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """`file:line: imports name` for every import of a forbidden package from the given packages."""
    found = []
    for top in packages:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ENTRY_POINTS:
                continue
            for line, name in imports(path):
                if name.split(".")[0] in forbidden:
                    found.append(f"{rel}:{line}: imports {name}")
    return sorted(set(found))


@pytest.mark.parametrize("package", ["xiuhua", "contracts"])
def test_the_runtime_and_contracts_import_neither_services_nor_tools(package: str) -> None:
    breaks = rule_breaks((package,), ABOVE_THE_RUNTIME)
    assert not breaks, f"{package} must not depend on {' or '.join(ABOVE_THE_RUNTIME)}:\n" + "\n".join(breaks)


def test_the_tools_use_only_the_public_names_of_services() -> None:
    private = []
    for path in sorted((ROOT / "xiuhua_tools").rglob("*.py")):
        for line, name in imports(path):
            parts = name.split(".")
            if parts[0] == "services" and any(p.startswith("_") and p != "__init__" for p in parts):
                private.append(f"{path.relative_to(ROOT).as_posix()}:{line}: imports {name}")
    assert not private, "the tools may use a service's public names only:\n" + "\n".join(sorted(set(private)))


def test_the_check_names_the_import_that_breaks_the_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk sees absolute, relative, nested and aliased imports, and says where each one is."""
    runtime = tmp_path / "xiuhua"
    (runtime / "inner").mkdir(parents=True)
    (runtime / "__init__.py").write_text("")
    (runtime / "clean.py").write_text("import json\nfrom xiuhua import bus\nfrom contracts import cases\n")
    (runtime / "inner" / "late.py").write_text("def f():\n    from services.dispatch import store as s\n")
    (runtime / "inner" / "tool.py").write_text("import os\nimport xiuhua_tools.cli as cli\n")
    (runtime / "__main__.py").write_text("from xiuhua_tools.cli import main\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert rule_breaks(("xiuhua",), ABOVE_THE_RUNTIME) == [
        "xiuhua/inner/late.py:2: imports services.dispatch",
        "xiuhua/inner/late.py:2: imports services.dispatch.store",
        "xiuhua/inner/tool.py:2: imports xiuhua_tools.cli",
    ]
    (runtime / "inner" / "rel.py").write_text("from ..services import x\n")  # resolves to xiuhua.services: allowed
    assert len(rule_breaks(("xiuhua",), ABOVE_THE_RUNTIME)) == 3
