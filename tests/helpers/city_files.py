"""A copy of the demo city's folder to edit, for the tests of city-file validation."""

from __future__ import annotations

import shutil
from pathlib import Path

from xiuhua.settings import DEMO_CITY


def copy_city(tmp_path: Path) -> Path:
    target = tmp_path / "city"
    shutil.copytree(DEMO_CITY, target)
    return target


def replace_line(path: Path, old: str, new: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    idx = next(i for i, ln in enumerate(lines) if old in ln)
    lines[idx] = lines[idx].replace(old, new)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return idx + 1
