"""What the bulletin says, from two weeks of figures: headline, tables, rates against targets, ranking. Pure.

Rates (each over what happened in the week, ISO week in city time):
- 限时整改率 on-time rate = cases resolved on time / cases resolved (target ≥ 95 %, 城管执法精细化管理 rules)
- 结案率 closure rate = cases opened in the week and closed by now / (opened − cancelled) (the week's cohort)
- 返工率 rework rate = failed verifications / verifications
- 群众满意率 satisfaction = (satisfied + basic) / call-backs rated (target ≥ 85 %, 城管执法精细化管理 rules)
A rate with nothing to divide by is None and shows as "—".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.notify.bulletin.figures import WeekData
from services.notify.bulletin.weeks import week_days
from xiuhua.ranks import standings

TOP = 10
RANK_LIST = 3  # red and black lists: the top and bottom three (城管执法 rules penalise the bottom three units)
LIST_ROWS = 30  # overdue / escalated cases listed in the document

TARGETS: dict[str, float] = {"on_time_rate": 0.95, "satisfaction_rate": 0.85}
LOWER_IS_BETTER = {"rework_rate"}
RATES = ("on_time_rate", "closure_rate", "rework_rate", "satisfaction_rate")
HEADLINE_COUNTS = ("opened", "closed", "overdue", "escalated")

SOURCES = {
    "grid": ("网格巡查", "Grid patrol"),
    "hotline": ("12345 热线", "12345 hotline"),
    "sensor": ("物联感知", "Sensors"),
    "inspection": ("督查暗访", "Supervision"),
    "merchant_check": ("门前三包检查", "Merchant checks"),
    "open311": ("市民 App", "Citizen apps"),
}


def pct(v: float | None) -> str:
    """0.9685 → '96.8%' (truncated, so a rate just under a target never shows as meeting it); None → '—'."""
    if v is None:
        return "—"
    return f"{int(v * 1000 + 1e-9) / 10:.1f}%"


def ratio(num: int, den: int) -> float | None:
    """num / den, or None when den is not positive."""
    return num / den if den > 0 else None


def rates(c: dict[str, int], *, basic_counts: bool = True) -> dict[str, float | None]:
    """The four rates of a week's counters (formulas in the module docstring)."""
    satisfied = c.get("satisfied", 0) + (c.get("basic", 0) if basic_counts else 0)
    return {
        "on_time_rate": ratio(c.get("resolved_on_time", 0), c.get("resolved", 0)),
        "closure_rate": ratio(c.get("cohort_closed", 0), c.get("opened", 0) - c.get("cohort_cancelled", 0)),
        "rework_rate": ratio(c.get("verify_failed", 0), c.get("verified", 0)),
        "satisfaction_rate": ratio(satisfied, c.get("rated", 0)),
    }


@dataclass
class Row:
    """A labelled figure with the previous week's beside it."""

    key: str
    label: str
    value: int
    previous: int = 0

    @property
    def delta(self) -> int:
        """Change against the previous week."""
        return self.value - self.previous


@dataclass
class UnitRank:
    """One unit's week."""

    rank: int
    unit_id: str
    name: str
    dispatched: int
    resolved: int
    resolved_on_time: int
    overdue: int
    rework: int
    on_time_rate: float | None


@dataclass
class Content:
    """Everything the templates and charts show; numbers only, no language."""

    week: str
    previous_week: str
    period_start: str
    period_end: str
    generated_at: datetime
    headline: dict[str, dict[str, Any]]
    rates: dict[str, dict[str, Any]]
    sources: list[Row]
    categories: list[Row]
    categories_total: int
    grids: list[Row]
    communities: list[Row]
    ranking: list[UnitRank]
    scoring_tables: dict[str, list[dict[str, Any]]] | None  # scoring's ranking by unit role, when published
    red_list: list[dict[str, str]]  # {name, value[, tied]}: the unit, the figure it was ranked by, 并列
    black_list: list[dict[str, str]]
    overdue: list[dict[str, Any]]
    escalated: list[dict[str, Any]]
    merchants: list[dict[str, Any]]
    gaps: list[str] = field(default_factory=list)
    unassessed: list[str] = field(default_factory=list)  # units with nothing assessed: not ranked

    def ties_listed(self) -> bool:
        """Whether a list holds a tie at its boundary whole (the bulletin says so)."""
        return any(u.get("tied") for u in [*self.red_list, *self.black_list])

    def headline_figures(self) -> dict[str, float | int | None]:
        """The flat figures `bulletin.v1.published` carries."""
        out: dict[str, float | int | None] = {k: v["value"] for k, v in self.headline.items()}
        out.update({k: v["value"] for k, v in self.rates.items()})
        return out


def _rows(this: list[dict[str, Any]], before: list[dict[str, Any]], field_: str = "count") -> list[Row]:
    prev = {d["key"]: int(d.get(field_, 0)) for d in before}
    rows = [Row(d["key"], d.get("label") or d["key"], int(d.get(field_, 0)), prev.get(d["key"], 0)) for d in this]
    return sorted((r for r in rows if r.value > 0), key=lambda r: (-r.value, r.key))


UNPLACED_KEY = "-"  # the projection's key for a case with no grid or community
UNPLACED = "未定位 unplaced"


def hot_spots(
    this: list[dict[str, Any]], before: list[dict[str, Any]], names: dict[str, str], *, with_code: bool = False
) -> list[Row]:
    """The top places of the week by name, busiest first (grid cells as 名称（代码）: inspectors use both); cases
    without a place are their own row, always last, never a hot spot."""

    def label(r: Row) -> str:
        name = r.label if r.label != r.key else names.get(r.key, r.key)
        return f"{name}（{r.key}）" if with_code and name != r.key else name

    rows = _rows(this, before)
    named = [Row(r.key, label(r), r.value, r.previous) for r in rows if r.key != UNPLACED_KEY]
    unplaced = [Row(r.key, UNPLACED, r.value, r.previous) for r in rows if r.key == UNPLACED_KEY]
    return named[:TOP] + unplaced


def rank_units(unit_facets: list[dict[str, Any]]) -> list[UnitRank]:
    """Units with cases resolved or overdue in the week, best first: on-time rate, then fewer overdue, more
    resolved. A unit with nothing resolved but cases overdue ranks last (rate 0)."""
    units = []
    for d in unit_facets:
        resolved, on_time, overdue = (
            int(d.get("resolved", 0)),
            int(d.get("resolved_on_time", 0)),
            int(d.get("overdue", 0)),
        )
        if resolved == 0 and overdue == 0:
            continue
        units.append(
            UnitRank(
                0,
                d["key"],
                d.get("label") or d["key"],
                int(d.get("dispatched", 0)),
                resolved,
                on_time,
                overdue,
                int(d.get("rework", 0)),
                ratio(on_time, resolved),
            )
        )

    def merit(u: UnitRank) -> tuple[float, int, int, int]:
        return -(u.on_time_rate or 0.0), u.overdue, u.rework, -u.resolved

    units.sort(key=lambda u: (*merit(u), u.unit_id))
    # Units equal on every figure share a rank: the rank is 1 + the units strictly better.
    for u in units:
        u.rank = 1 + sum(1 for v in units if merit(v) < merit(u))
    return units


def boards(tables: dict[str, list[dict[str, Any]]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Red and black lists of scoring's ranking tables (black: marked black or among the penalised bottom)."""
    rows = [r for t in tables.values() for r in t]

    def entry(r: dict[str, Any]) -> dict[str, str]:
        e = {"name": str(r.get("name") or r.get("id")), "value": f"{float(r.get('score') or 0):.1f}"}
        return e | ({"tied": "1"} if r.get("tied") else {})

    red = [entry(r) for r in rows if r.get("board") == "red"]
    black = [entry(r) for r in rows if r.get("board") == "black" or r.get("bottom")]
    return red, black


def build_content(
    this: WeekData,
    before: WeekData,
    generated_at: datetime,
    *,
    targets: dict[str, float] | None = None,
    basic_counts: bool = True,
    area_names: dict[str, str] | None = None,
) -> Content:
    """The bulletin of `this` week, compared with `before`; `targets` default to the 城管执法精细化管理 rules'."""
    targets = TARGETS if targets is None else targets
    c, p = this.counters, before.counters
    headline = {
        k: {"value": c.get(k, 0), "previous": p.get(k, 0), "delta": c.get(k, 0) - p.get(k, 0)} for k in HEADLINE_COUNTS
    }
    now_r, prev_r = rates(c, basic_counts=basic_counts), rates(p, basic_counts=basic_counts)
    rate_rows: dict[str, dict[str, Any]] = {}
    for k in RATES:
        v, pv, target = now_r[k], prev_r[k], targets.get(k)
        met = None if v is None or target is None else v >= target
        rate_rows[k] = {
            "value": v,
            "previous": pv,
            "target": target,
            "met": met,
            "delta": None if v is None or pv is None else v - pv,
        }
    categories = _rows(this.facets.get("category", []), before.facets.get("category", []))
    ranking = rank_units(this.facets.get("unit", []))
    n = min(RANK_LIST, len(ranking) // 2)
    if this.ranking:
        red, black = boards(this.ranking)
    else:
        red, black = own_boards(ranking, n)
    listed = sorted(this.listed, key=lambda d: (-int(d.get("level") or 0), str(d.get("due_at") or ""), d["case_id"]))
    gaps = []
    if not this.ranking:
        gaps.append("unit_ranking_from_notify_projection")
    start, end = week_days(this.week)
    return Content(
        week=this.week,
        previous_week=before.week,
        period_start=start.isoformat(),
        period_end=end.isoformat(),
        generated_at=generated_at,
        headline=headline,
        rates=rate_rows,
        sources=_rows(this.facets.get("source", []), before.facets.get("source", [])),
        categories=categories[:TOP],
        categories_total=len(categories),
        grids=hot_spots(this.facets.get("grid", []), before.facets.get("grid", []), area_names or {}, with_code=True),
        communities=hot_spots(this.facets.get("community", []), before.facets.get("community", []), area_names or {}),
        ranking=ranking,
        scoring_tables=this.ranking or None,
        red_list=red,
        black_list=black,
        overdue=[d for d in listed if d.get("overdue")][:LIST_ROWS],
        escalated=[d for d in listed if d.get("level")][:LIST_ROWS],
        merchants=sorted(this.merchants, key=lambda d: (not d.get("escalated"), d["merchant_id"])),
        gaps=gaps,
        unassessed=sorted(name for names in this.unassessed.values() for name in names),
    )


def own_boards(ranking: list[UnitRank], n: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Red and black lists of notify's own ranking (best first): the same tie rules as scoring's (ranks shared,
    a tie at a boundary listed whole, equal ranks at both ends on neither list); the black list worst first."""
    places = standings([-float(u.rank) for u in ranking], n, n, 0, half=False)

    def entry(u: UnitRank, tied: bool) -> dict[str, str]:
        return {"name": u.name, "value": pct(u.on_time_rate)} | ({"tied": "1"} if tied else {})

    red = [entry(u, s.tied) for u, s in zip(ranking, places, strict=True) if s.red]
    black = [entry(u, s.tied) for u, s in zip(ranking, places, strict=True) if s.black]
    return red, list(reversed(black))
