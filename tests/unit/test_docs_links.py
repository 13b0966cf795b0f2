"""The documentation stands alone: every relative link resolves, and nothing points outside the repository."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from xiuhua.settings import PROJECT_ROOT
from xiuhua_tools.docs_site import anchors, broken_links, markdown_files, slug


def test_every_relative_link_in_the_readme_and_docs_points_at_an_existing_file_and_heading() -> None:
    pages = markdown_files()
    assert PROJECT_ROOT / "README.md" in pages and PROJECT_ROOT / "docs" / "README.md" in pages
    assert len(pages) > 20
    assert broken_links() == []


def test_a_broken_link_is_reported_with_its_file_line_and_reason(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "sub" / "page.md").write_text("# Page\n\n## Routing table (`routing.yaml`)\n")
    (tmp_path / "README.md").write_text(
        "# Top\n\n"
        "[fine](docs/sub/page.md#routing-table-routingyaml) and [web](https://example.org/x.md)\n\n"
        "[gone](docs/missing.md)\n\n"
        "[no such heading](docs/sub/page.md#routing)\n\n"
        "`[in code](docs/missing-too.md)`\n\n"
        "[self](#top) [self, wrong](#bottom)\n"
    )
    (tmp_path / "docs" / "README.md").write_text("# Index\n\n[up and out](../../elsewhere.md)\n")
    assert broken_links(tmp_path) == [
        "README.md:5: docs/missing.md: no such file",
        "README.md:7: docs/sub/page.md#routing: no heading #routing in page.md",
        "README.md:11: #bottom: no heading #bottom in README.md",
        "docs/README.md:3: ../../elsewhere.md: no such file",
    ]


def test_headings_get_the_anchors_github_gives_them() -> None:
    assert slug("Replay: `xiuhua scoring rebuild --check`") == "replay-xiuhua-scoring-rebuild---check"
    assert slug("Merchants (门前三包 / 五包 / 六包)") == "merchants-门前三包--五包--六包"
    assert anchors("# A\n\n## Tests\n\n## Tests\n\n```\n# not a heading\n```\n") == {"a", "tests", "tests-1"}


# Assembled so that this file does not match what it looks for.
_OUTSIDE = re.compile("|".join([r"DESIGN\.md", r"STORE\.md", r"\.\./shared", "iss" + r"ue [0-9]+\b"]))
_SKIP_DIRS = {".git", ".venv", "var", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}


def _project_files() -> Iterator[Path]:
    for folder, dirs, files in os.walk(PROJECT_ROOT):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        yield from (Path(folder, f) for f in files if Path(f).suffix not in {".jsonl", ".png", ".pdf", ".pyc"})


def test_nothing_in_the_repository_points_at_files_outside_it_or_at_issue_numbers() -> None:
    found = []
    for path in _project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(PROJECT_ROOT)
        found += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if _OUTSIDE.search(line)]
    assert found == []
