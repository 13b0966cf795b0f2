"""`xiuhua bulletin [--week 2026-W47] [--out DIR] [--no-pdf] [--json]`: build one week's bulletin now.

Reads notify's pre-aggregated bulletin documents (never the cases themselves), writes the HTML, Markdown and,
where Chromium exists, PDF editions, updates the archive index and prints where the files are. It publishes
nothing: the scheduled bulletin is announced by the notify service (`bulletin.v1.published`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from xiuhua.city import load_city
from xiuhua.settings import Settings
from xiuhua_tools.commands import emit, live_settings
from xiuhua_tools.progress import Steps


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("bulletin", help="build one week's bulletin (工作周报) from notify's store now")
    p.add_argument("--week", help="ISO week in city time, e.g. 2026-W47 (default: last week)")
    p.add_argument("--out", type=Path, help="archive folder (default: $XIUHUA_VAR_DIR/bulletins)")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF even when Chromium is installed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_bulletin)


def _archive_url(settings: Settings, root: Path) -> str | None:
    """Where the archive is served, for the files' URLs: `XIUHUA_BULLETIN_BASE_URL`, else the notify service a
    running `xiuhua up` serves it from. None for another folder (`--out`): nothing serves that."""
    from services.notify.bulletin.service import ROUTE, archive_root

    if root.resolve() != archive_root(settings).resolve():
        return None
    if settings.bulletin_base_url:
        return settings.bulletin_base_url.rstrip("/")
    endpoints = settings.var_dir / "endpoints.json"
    if endpoints.exists():
        notify = json.loads(endpoints.read_text(encoding="utf-8")).get("services", {}).get("notify", {})
        if notify.get("http"):
            return str(notify["http"]).rstrip("/") + ROUTE
    return None


def _bulletin(args: argparse.Namespace) -> int:
    from services.notify.bulletin.builder import Built, build_bulletin, build_steps
    from services.notify.bulletin.service import archive_root
    from services.notify.bulletin.weeks import parse_week, week_of
    from xiuhua.store import Store

    settings = live_settings(need=("mongo_url",))
    now = datetime.now(UTC)
    week = args.week or week_of(now - timedelta(days=7))
    try:
        parse_week(week)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    root = args.out or archive_root(settings)
    city = load_city(settings.city_dir)
    store = Store(settings.mongo_url or "", settings.database("notify"), tx_lock_dir=settings.store_tx_lock_dir)

    async def build(steps: Steps) -> Built:
        try:
            return await build_bulletin(
                store,
                city,
                week,
                root,
                now,
                pdf=not args.no_pdf,
                base_url=_archive_url(settings, root),
                progress=steps.step,
            )
        finally:
            await store.close()

    with Steps(f"bulletin {week}", total=build_steps(not args.no_pdf)) as steps:
        built = asyncio.run(build(steps))
    ev = built.event
    lines = [f"bulletin {ev.week} ({ev.period_start} – {ev.period_end}) in {ev.directory}"]
    lines += [f"  {f.language} {f.format:4s} {f.path}" for f in ev.files]
    lines.append(f"  index     {ev.index}")
    if not ev.pdf:
        lines.append(f"  no PDF: {ev.pdf_skipped_reason}")
    lines.append(
        "  " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in ev.headline.items())
    )
    emit(args, "\n".join(lines), ev.model_dump(mode="json"))
    return 0
