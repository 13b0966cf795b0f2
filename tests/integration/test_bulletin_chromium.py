"""The bulletin as a reader sees it: headless Chromium (Debian's `chromium` package) loads the self-contained
HTML and reports what it laid out — title, tables with rows, and every chart decoded with a non-zero size.
Chromium also prints the PDF. Without Chromium on the machine these tests are skipped, saying so."""

from __future__ import annotations

import asyncio
import re
import tempfile
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from services.notify.bulletin.content import build_content
from services.notify.bulletin.figures import WeekData
from services.notify.bulletin.pdf import chromium_args, find_chromium, print_pdf
from services.notify.bulletin.render import render_edition

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine: `apt-get install chromium` to run the rendering tests"
)

# Runs after load: writes what the browser decoded and laid out into attributes that --dump-dom shows.
PROBE = """<script>
window.addEventListener("load", () => {
  document.querySelectorAll("img").forEach((img) => {
    const box = img.getBoundingClientRect();
    img.setAttribute("data-natural", img.naturalWidth + "x" + img.naturalHeight);
    img.setAttribute("data-shown", Math.round(box.width) + "x" + Math.round(box.height));
    img.setAttribute("data-complete", String(img.complete));
  });
  document.querySelectorAll("table").forEach((t) => {
    t.setAttribute("data-rows", String(t.rows.length));
    t.setAttribute("data-shown-height", String(Math.round(t.getBoundingClientRect().height)));
  });
  document.body.setAttribute("data-probed", "yes");
});
</script>"""


def week() -> tuple[WeekData, WeekData]:
    def f(facet: str, key: str, label: str, **kw: int) -> dict:
        return {"week": "2026-W47", "facet": facet, "key": key, "label": label, **kw}

    this = WeekData(
        "2026-W47",
        {
            "opened": 40,
            "closed": 30,
            "resolved": 32,
            "resolved_on_time": 31,
            "verified": 30,
            "verify_failed": 1,
            "rated": 20,
            "satisfied": 15,
            "basic": 3,
            "overdue": 1,
            "cohort_closed": 25,
        },
        {
            "category": [f("category", "0201", "垃圾箱满溢", count=12), f("category", "0101", "占道经营", count=9)],
            "source": [f("source", "grid", "grid", count=25), f("source", "hotline", "hotline", count=15)],
            "grid": [f("grid", "CD01-03", "CD01-03", count=8), f("grid", "CD02-01", "CD02-01", count=4)],
            "community": [f("community", "CD01", "东园社区", count=20)],
            "unit": [
                f("unit", "CD-SAN", "城东环卫所", dispatched=20, resolved=18, resolved_on_time=18),
                f("unit", "CD-ENF", "城东综合执法中队", dispatched=12, resolved=10, resolved_on_time=8, overdue=1),
            ],
        },
        [
            {
                "week": "2026-W47",
                "case_id": "C-1",
                "overdue": True,
                "due_at": datetime(2026, 11, 18, 6, tzinfo=UTC),
                "category_name": "占道经营",
                "unit_name": "城东综合执法中队",
                "street_name": "城东街道",
                "grid": "CD01-03",
            }
        ],
    )
    return this, WeekData("2026-W46", {"opened": 35, "closed": 28, "resolved": 30, "resolved_on_time": 27})


class Page(HTMLParser):
    """The tags of the dumped DOM that the assertions look at."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.tables: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "table":
            self.tables.append(a)
        elif tag == "body":
            self.body = a

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def dump_dom(html_file: Path) -> str:
    """The DOM after load, as Chromium serialises it."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="xh-chromium-") as profile:
        run = subprocess.run(
            [
                *chromium_args(CHROMIUM, Path(profile)),
                "--virtual-time-budget=5000",
                "--dump-dom",
                html_file.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-500:]
    return run.stdout.decode()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_chromium_shows_the_title_tables_and_every_chart(tmp_path: Path, lang: str) -> None:
    this, before = week()
    edition = render_edition(
        build_content(this, before, datetime(2026, 11, 23, 7, tzinfo=UTC)),
        lang,
        {"0201": "Overflowing bin", "0101": "Street vending"},
    )
    page_file = tmp_path / f"bulletin.{lang}.html"
    page_file.write_text(edition.html.replace("</body>", PROBE + "</body>"), encoding="utf-8")

    page = Page()
    page.feed(dump_dom(page_file))
    assert page.body.get("data-probed") == "yes", "the page did not finish loading"
    text = " ".join(page.text)
    assert ("城管执法精细化管理工作周报" if lang == "zh" else "Weekly Bulletin") in text
    assert ("立案数" if lang == "zh" else "Cases opened") in text and "96.8%" in text

    assert len(page.imgs) == 4
    for img in page.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        assert img["data-complete"] == "true"
        w, h = (int(x) for x in img["data-natural"].split("x"))
        assert w > 300 and h > 150, f"chart {img['alt']} decoded as {img['data-natural']}"
        sw, sh = (int(x) for x in img["data-shown"].split("x"))
        assert sw > 300 and sh > 100, f"chart {img['alt']} laid out as {img['data-shown']}"

    classes = {t.get("class"): t for t in page.tables}
    assert {"headline", "rates", "sources", "categories", "grids", "communities", "ranking", "overdue"} <= set(classes)
    assert classes["headline"]["data-rows"] == "5"  # header + opened, closed, overdue, escalated
    assert classes["categories"]["data-rows"] == "3" and classes["ranking"]["data-rows"] == "3"
    assert all(int(t["data-shown-height"]) > 20 for t in page.tables)


def test_chromium_prints_the_pdf(tmp_path: Path) -> None:
    this, before = week()
    edition = render_edition(build_content(this, before, datetime(2026, 11, 23, 7, tzinfo=UTC)), "zh", {})
    html = tmp_path / "bulletin.zh.html"
    html.write_text(edition.html, encoding="utf-8")
    out = tmp_path / "bulletin.zh.pdf"
    assert asyncio.run(print_pdf(html, out)) is None
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 2  # tables and four charts take more than one page


def is_pdf(path: str) -> bool:
    return Path(path).read_bytes().startswith(b"%PDF")


async def test_a_quiet_week_builds_with_pdf_editions_named_in_the_event(settings, tmp_path: Path) -> None:
    from services.notify.bulletin.builder import build_bulletin
    from tests.helpers.bulletin import BULLETIN_ONLY
    from xiuhua.service import running

    async with running(BULLETIN_ONLY, settings) as rt:
        built = await build_bulletin(rt.store, rt.city, "2026-W47", tmp_path, datetime(2026, 11, 23, 7, tzinfo=UTC))
    ev = built.event
    assert ev.pdf is True and ev.pdf_skipped_reason is None
    pdfs = sorted(f.path for f in ev.files if f.format == "pdf")
    assert pdfs == [str(tmp_path / "2026-W47" / f"bulletin.{lang}.pdf") for lang in ("en", "zh")]
    assert all(is_pdf(p) for p in pdfs)
    assert ev.headline["opened"] == 0 and ev.headline["on_time_rate"] is None
    md = (tmp_path / "2026-W47" / "bulletin.zh.md").read_text(encoding="utf-8")
    assert "| 限时整改率 | — | — | ≥ 95.0% |  |" in md and "本周无商户等级变化。" in md
