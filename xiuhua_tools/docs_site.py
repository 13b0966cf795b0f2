"""The project's documentation (README.md, CHANGELOG.md, docs/) rendered as HTML for `xiuhua docs --serve`, and
the relative links between its pages, which a test checks resolve.

Headings get the ids GitHub gives them, so a link to `page.md#a-heading` works the same on the forge and when
served. Pages keep their `.md` paths, so relative links need no rewriting.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

from xiuhua.settings import PROJECT_ROOT

TOP_LEVEL = ("README.md", "CHANGELOG.md")
DOCS = "docs"

_STYLE = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:0 auto;max-width:62rem;padding:1rem 2rem;
line-height:1.5;color:#222}
header{border-bottom:1px solid #ddd;padding-bottom:.5rem;margin-bottom:1rem;font-size:.9rem}
header a{margin-right:1rem}
code,pre{font-family:ui-monospace,monospace;font-size:.85rem}
pre{background:#f6f6f4;border:1px solid #eee;padding:.5rem;overflow:auto}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top;text-align:left}
"""


SKIPPED = {".venv", "var", "node_modules", "build", "dist"}  # not the project's pages: installs and run-time files


def markdown_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """Every documentation page: the top-level README and changelog, everything under docs/, and the other
    Markdown files of the repository (a data folder's sources, an example's README) that pages link to."""
    top = [root / name for name in TOP_LEVEL if (root / name).exists()]
    docs = sorted((root / DOCS).rglob("*.md"))
    others = sorted(
        p
        for p in root.rglob("*.md")
        if p not in top
        and DOCS not in p.relative_to(root).parts[:1]
        and not any(part in SKIPPED or part.startswith(".") for part in p.relative_to(root).parts[:-1])
    )
    return top + docs + others


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _text(inline: Token) -> str:
    return "".join(c.content for c in inline.children or () if c.type in ("text", "code_inline"))


def _headings(tokens: list[Token]) -> Iterator[tuple[Token, str]]:
    """Each heading's opening token with its anchor, repeated titles numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            base = slug(_text(tokens[i + 1]))
            n = seen.get(base, 0)
            seen[base] = n + 1
            yield tok, base if n == 0 else f"{base}-{n}"


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings."""
    return {anchor for _, anchor in _headings(_parser().parse(text))}


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line, target) of every link and image in a page, code spans and blocks excluded."""
    for tok in _parser().parse(text):
        for child in tok.children or ():
            target = child.attrGet("href") if child.type == "link_open" else child.attrGet("src")
            if child.type in ("link_open", "image") and isinstance(target, str):
                yield (tok.map[0] + 1 if tok.map else 0), target


def broken_links(root: Path = PROJECT_ROOT) -> list[str]:
    """`file:line: target: why` for every relative link that points at no file, or at no heading of its page."""
    problems = []
    headings: dict[Path, set[str]] = {}
    for page in markdown_files(root):
        for line, target in links(page.read_text(encoding="utf-8")):
            parts = urlsplit(target)
            if parts.scheme or parts.netloc:
                continue  # an outside address: not ours to check
            where = f"{page.relative_to(root)}:{line}: {target}"
            dest = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif root.resolve() not in dest.parents and dest != root.resolve():
                problems.append(f"{where}: outside the repository")
            elif parts.fragment and dest.suffix == ".md":
                if dest not in headings:
                    headings[dest] = anchors(dest.read_text(encoding="utf-8"))
                if parts.fragment not in headings[dest]:
                    problems.append(f"{where}: no heading #{parts.fragment} in {dest.name}")
    return problems


def render(text: str, title: str) -> str:
    """One page as a standalone HTML document, headings carrying their anchors."""
    md = _parser()
    tokens = md.parse(text)
    for tok, anchor in _headings(tokens):
        tok.attrSet("id", anchor)
    body = md.renderer.render(tokens, md.options, {})
    return (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><header><a href='/docs/README.md'>Documentation</a>"
        "<a href='/README.md'>README</a><a href='/CHANGELOG.md'>Changelog</a><a href='/'>Bus contracts (AsyncAPI)</a>"
        f"</header><main>{body}</main></body></html>"
    )


def pages(root: Path = PROJECT_ROOT) -> dict[str, tuple[str, bytes]]:
    """URL path → (content type, body) of every page, at its path in the repository; `/docs/` is the index."""
    out: dict[str, tuple[str, bytes]] = {}
    for page in markdown_files(root):
        text = page.read_text(encoding="utf-8")
        first = text.lstrip().splitlines()[0] if text.strip() else page.stem
        body = render(text, first.lstrip("# ").strip()).encode()
        out["/" + page.relative_to(root).as_posix()] = ("text/html; charset=utf-8", body)
    if f"/{DOCS}/README.md" in out:
        out[f"/{DOCS}/"] = out[f"/{DOCS}/README.md"]
    return out
