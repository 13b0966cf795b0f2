"""The bulletin's editions: charts, then HTML (self-contained, charts as data: URIs) and Markdown (charts as PNG
files beside it), from jinja2 templates in `templates/`, one per format, worded by `i18n.LABELS`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from services.notify.bulletin import charts
from services.notify.bulletin.content import RANK_LIST, RATES, SOURCES, UNPLACED_KEY, Content, Row, pct
from services.notify.bulletin.i18n import LABELS, ROLES_ZH
from services.notify.bulletin.weeks import CITY_TZ

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Edition:
    """One language's files, as text and bytes, not yet written."""

    language: str
    html: str
    markdown: str
    charts: dict[str, bytes] = field(default_factory=dict)  # file name under charts/ → PNG


def signed(n: int | float | None, unit: str = "") -> str:
    """+3, −2, 0; None → '—'."""
    if n is None:
        return "—"
    if isinstance(n, float):
        text = f"{abs(n):.1f}"
        return ("+" if n > 0 else "−" if n < 0 else "±") + text + unit
    return ("+" if n > 0 else "−" if n < 0 else "±") + str(abs(n)) + unit


def local(at: datetime | str | None) -> str:
    """A stored moment in city time, to the minute (a store may return naive UTC, or an ISO string)."""
    if not at:
        return "—"
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            return at
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=pct, signed=signed, local=local)
    return env


def _source_label(key: str, lang: str) -> str:
    zh, en = SOURCES.get(key, (key, key))
    return zh if lang == "zh" else en


def _place(d: dict[str, Any]) -> str:
    return " / ".join(x for x in (d.get("street_name"), d.get("community_name"), d.get("grid")) if x) or "—"


def _cjk_ok(lang: str) -> bool:
    return lang == "zh" and charts.cjk_font() is not None


def make_charts(content: Content, lang: str, category_en: dict[str, str]) -> dict[str, bytes]:
    """The four charts of one edition; Chinese labels only when a CJK font is installed."""
    words = LABELS[lang] if lang == "en" or _cjk_ok(lang) else LABELS["en"]
    chart_lang = "zh" if _cjk_ok(lang) else "en"
    cjk = chart_lang == "zh"

    def cat_label(r: Row) -> str:
        return r.label if chart_lang == "zh" else category_en.get(r.key, r.key)

    def grid_label(r: Row) -> str:  # without a CJK font the chart names a cell by its code: names are Chinese
        if chart_lang == "zh":
            return r.label
        return "unplaced" if r.key == UNPLACED_KEY else r.key

    legend = (words["this_week"], words["previous_week"])
    cats = content.categories
    grids = content.grids
    return {
        f"{lang}-categories.png": charts.compare_bars(
            words["chart_categories"],
            [cat_label(r) for r in cats],
            [r.value for r in cats],
            [r.previous for r in cats],
            legend,
            cjk=cjk,
        ),
        f"{lang}-sources.png": charts.compare_bars(
            words["chart_sources"],
            [_source_label(r.key, chart_lang) for r in content.sources],
            [r.value for r in content.sources],
            [r.previous for r in content.sources],
            legend,
            cjk=cjk,
        ),
        f"{lang}-rates.png": charts.rate_bars(
            words["chart_rates"],
            [words[k] for k in RATES],
            [content.rates[k]["value"] for k in RATES],
            [content.rates[k]["target"] for k in RATES],
            words["legend_target"],
            [pct(content.rates[k]["value"]) for k in RATES],
            cjk=cjk,
        ),
        f"{lang}-grids.png": charts.compare_bars(
            words["chart_grids"],
            [grid_label(r) for r in grids],
            [r.value for r in grids],
            [r.previous for r in grids],
            legend,
            cjk=cjk,
        ),
    }


def render_edition(content: Content, lang: str, category_en: dict[str, str]) -> Edition:
    """HTML and Markdown of one language, with the charts they show."""
    pngs = make_charts(content, lang, category_en)
    words = LABELS[lang]
    view: dict[str, Any] = {
        "c": content,
        "L": words,
        "lang": lang,
        "other": "en" if lang == "zh" else "zh",
        "subtitle": words["subtitle"].format(week=content.week, start=content.period_start, end=content.period_end),
        "generated_at": content.generated_at.astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M"),
        "rates": RATES,
        "rank_n": min(RANK_LIST, len(content.ranking) // 2),
        "source_label": lambda key: _source_label(key, lang),
        "category_label": (lambda r: r.label) if lang == "zh" else (lambda r: category_en.get(r.key, r.label)),
        "place": _place,
        "role_label": (lambda role: ROLES_ZH.get(role, role)) if lang == "zh" else (lambda role: role),
        "listed_more": {
            k: max(0, content.headline[k]["value"] - len(getattr(content, k))) for k in ("overdue", "escalated")
        },
    }
    env = _env()
    html = env.get_template("bulletin.html.j2").render(
        **view, charts={k.split("-", 1)[1].removesuffix(".png"): charts.data_uri(v) for k, v in pngs.items()}
    )
    md = env.get_template("bulletin.md.j2").render(
        **view, charts={k.split("-", 1)[1].removesuffix(".png"): f"charts/{k}" for k in pngs}
    )
    return Edition(lang, html, md, pngs)
