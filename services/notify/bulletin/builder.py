"""Build one week's bulletin from the projection and archive it; publish it once (`bulletin.v1.published`)."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from contracts.bulletins import BulletinFile, BulletinPublished
from services.notify.bulletin.archive import rebuild_index, write_atomic, write_manifest
from services.notify.bulletin.content import Content, build_content
from services.notify.bulletin.figures import load_week
from services.notify.bulletin.i18n import LANGUAGES
from services.notify.bulletin.pdf import print_pdf
from services.notify.bulletin.render import render_edition
from services.notify.bulletin.weeks import parse_week, previous_week
from xiuhua.bus import Outgoing
from xiuhua.city import City
from xiuhua.ledger import Ledger
from xiuhua.store import Store

log = logging.getLogger("xiuhua.notify.bulletin")


@dataclass
class Built:
    """A bulletin on disk and the event that names it."""

    content: Content
    event: BulletinPublished


def _write_editions(content: Content, week_dir: Path, category_en: dict[str, str]) -> list[BulletinFile]:
    files: list[BulletinFile] = []
    for lang in LANGUAGES:
        edition = render_edition(content, lang, category_en)
        for name, png in edition.charts.items():
            write_atomic(week_dir / "charts" / name, png)
        html = write_atomic(week_dir / f"bulletin.{lang}.html", edition.html)
        md = write_atomic(week_dir / f"bulletin.{lang}.md", edition.markdown)
        files += [
            BulletinFile(language=lang, format="html", path=str(html)),
            BulletinFile(language=lang, format="md", path=str(md)),
        ]
    return files


def file_url(base_url: str, root: Path, path: Path) -> str:
    """The URL of an archived file where `root` is served at `base_url` (path segments percent-encoded)."""
    rel = path.resolve().relative_to(root.resolve())
    return base_url.rstrip("/") + "/" + "/".join(urllib.parse.quote(part) for part in rel.parts)


def ledger_key(week: str) -> str:
    """The once-per-week key every instance claims before publishing."""
    return f"bulletin:{week}"


def build_steps(pdf: bool) -> int:
    """How many steps `build_bulletin` reports to its `progress`."""
    return 3 + (len(LANGUAGES) if pdf else 0)


async def build_bulletin(
    store: Store,
    city: City,
    week: str,
    root: Path,
    now: datetime,
    *,
    pdf: bool = True,
    base_url: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Built:
    """Read the week and the one before, write HTML, Markdown, charts (and PDF) under `root/<week>/`.

    With `base_url` (where `root` is served), each file in the event also names its URL; `progress` hears of each
    step as it begins (`build_steps`)."""
    parse_week(week)
    progress(f"reading {week} and the week before")
    this, before = await load_week(store, week), await load_week(store, previous_week(week))
    names = {a.code: a.name for a in city.areas.by_code.values()} if getattr(city, "areas", None) else {}
    content = build_content(this, before, now, **assessment_of(city), area_names=names)
    week_dir = root / week
    category_en = {item.code: item.name_en for item in city.catalogue.items()}
    progress("drawing the charts, writing HTML and Markdown")
    # Charts and templates are CPU work: off the event loop, so consumers keep running meanwhile.
    files = await asyncio.to_thread(_write_editions, content, week_dir, category_en)
    skipped: str | None = "PDF not requested"
    if pdf:
        skipped = None
        for lang in LANGUAGES:
            progress(f"printing the {lang} PDF (Chromium)")
            out = week_dir / f"bulletin.{lang}.pdf"
            reason = await print_pdf(week_dir / f"bulletin.{lang}.html", out)
            if reason:
                skipped = reason
                log.warning("bulletin %s: no PDF: %s", week, reason)
                break
            files.append(BulletinFile(language=lang, format="pdf", path=str(out)))
    if skipped:
        files = [f for f in files if f.format != "pdf"]
    if base_url:
        files = [f.model_copy(update={"url": file_url(base_url, root, Path(f.path))}) for f in files]
    index = root / "index.md"
    event = BulletinPublished(
        correlation_id=f"bulletin:{week}",
        week=week,
        period_start=content.period_start,
        period_end=content.period_end,
        languages=list(LANGUAGES),
        files=files,
        directory=str(week_dir),
        index=str(index),
        pdf=skipped is None,
        pdf_skipped_reason=skipped,
        headline=content.headline_figures(),
        gaps=content.gaps,
        occurred_at=now,
    )
    progress("writing the manifest and the archive index")
    await asyncio.to_thread(write_manifest, week_dir, event.model_dump(mode="json"))
    await asyncio.to_thread(rebuild_index, root)
    return Built(content, event)


async def publish_once(
    store: Store,
    ledger: Ledger,
    city: City,
    week: str,
    root: Path,
    now: datetime,
    *,
    pdf: bool = True,
    base_url: str | None = None,
) -> BulletinPublished | None:
    """Build and publish `week` unless some instance already did; the ledger claim picks one publisher."""
    key = ledger_key(week)
    if await ledger.seen([key]):
        return None
    built = await build_bulletin(store, city, week, root, now, pdf=pdf, base_url=base_url)
    out = [Outgoing.of(built.event)]
    if not await ledger.claim(key, out):
        return None  # another instance claimed it while this one was rendering; its event names its files
    await ledger.publish([(key, out)])
    log.info("bulletin %s published: %s", week, built.event.directory)
    return built.event


def assessment_of(city: City) -> dict[str, Any]:
    """Targets and the 基本满意 rule from the city's assessment file when it has one, else the 城管执法 rules'."""
    assessment = getattr(city, "assessment", None)
    if assessment is None:
        return {}
    targets = getattr(assessment, "targets", None)
    due = getattr(assessment, "due", None)
    out: dict[str, object] = {}
    if targets is not None:
        out["targets"] = {"on_time_rate": targets.on_time_rate, "satisfaction_rate": targets.satisfaction_rate}
    if due is not None and hasattr(due, "basic_counts_as_satisfied"):
        out["basic_counts"] = bool(due.basic_counts_as_satisfied)
    return out
