"""Merchant duty points (门前三包 / 五包 / 六包 积分制) as a pure fold. No I/O.

Each merchant starts every month with `base` points. Sources of a failure, each counted once:
- a duty check (`report.v1.in.merchant_check`, keyed by `check_id`) with at least one failed item loses the
  points of each failed item's severity;
- a violation case (`case.v1.opened` with `merchant_id`, keyed by `case_id`) whose source is not
  `merchant_check` loses the points of `case_severity` (`serious` when urgent). Cases with source
  `merchant_check` are the checks themselves or the enforcement cases this service asked for, already counted.
A month with at least `bonus_min_checks` checks and no failure earns `bonus`. A first failure of a duty item is
a warning (批评教育: the community leads its case and sets a time to put it right); the same item failing for the
`escalate_from`-th time within `repeat_window_days`, or a first-failure case not put right by its deadline
(`overdue` fact, from the case's `case.v1.overdue`), escalates the merchant to enforcement (处罚), once per month.
The window reaches back into the months before (two of them when the month before is shorter than the window:
early March reaches late January), so a month's figures are worked out from its facts and those months'
(`earlier_months`), and a new fact is worked into the months after that reach back to it (`later_months`).

A month's grade (月评) is that month's points alone. The merchant's class (分类 A/B/C, `merchant_class`) is
judged on a rolling window of months (`assessment.yaml` `merchants.classing`), starting from the class
registered in `merchants.yaml`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from contracts.cases import CaseOpened
from contracts.reports import MerchantCheck
from services.scoring.periods import CITY_TZ, periods_of
from xiuhua.city.assessment import MerchantRules
from xiuhua.ranks import standings

Fact = dict[str, Any]


def month_of(at: datetime) -> str:
    """The month (YYYY-MM, city time) a moment falls in."""
    return periods_of(at, CITY_TZ)["month"]


def period_id(merchant_id: str, month: str) -> str:
    """The natural key of a merchant's month document."""
    return f"{merchant_id}:{month}"


def check_fact(check: MerchantCheck, rules: MerchantRules) -> Fact:
    """The record of one duty check."""
    failed = sorted(item for item, result in check.items.items() if result == "fail")
    return {
        "id": f"check:{check.check_id}",
        "at": check.checked_at.astimezone(CITY_TZ).isoformat(),
        "kind": "check",
        "failed": failed,
        "points": sum(rules.item_points(i) for i in failed),
    }


def case_fact(ev: CaseOpened, rules: MerchantRules) -> Fact | None:
    """The record of a violation case attributed to a merchant, or None when it does not count here."""
    if not ev.merchant_id or ev.source == "merchant_check":
        return None
    severity = "serious" if ev.urgency == "urgent" and "serious" in rules.severity_points else rules.case_severity
    return {
        "id": f"case:{ev.case_id}",
        "at": ev.reported_at.astimezone(CITY_TZ).isoformat(),
        "kind": "case",
        "failed": [ev.category_code],
        "points": rules.severity_points[severity],
    }


def add_fact(facts: list[Fact], fact: Fact) -> list[Fact] | None:
    """The facts with one more, sorted by (time, id); None if already there."""
    if any(f["id"] == fact["id"] for f in facts):
        return None
    return sorted([*facts, fact], key=lambda f: (datetime.fromisoformat(f["at"]), f["id"]))


def overdue_fact(case_id: str, at: datetime, category: str) -> Fact:
    """A first-failure case of the merchant's not put right by its deadline (逾期未整改): no points, escalates."""
    return {
        "id": f"overdue:{case_id}",
        "at": at.astimezone(CITY_TZ).isoformat(),
        "kind": "overdue",
        "failed": [],
        "points": 0.0,
        "category": category,
    }


def overdue_of(case_id: str, facts: list[Fact], escalation_category: str) -> tuple[Fact, str] | None:
    """(the merchant fact, merchant id) when a case opened from a duty check — not the enforcement case itself —
    has gone overdue (its `case.v1.overdue`), from the case's facts in any order; else None."""
    opened = next((f for f in facts if f["t"] == "opened" and f.get("merchant")), None)
    overdue = next((f for f in facts if f["t"] == "overdue"), None)
    if opened is None or overdue is None or opened.get("src") != "merchant_check":
        return None
    if opened.get("cat") == escalation_category:
        return None
    return overdue_fact(case_id, datetime.fromisoformat(overdue["at"]), str(opened["cat"])), str(opened["merchant"])


def repeated(facts: list[Fact], before: list[Fact], rules: MerchantRules) -> list[str]:
    """The duty items of this month's failures that failed for the `escalate_from`-th time (or more) within
    `repeat_window_days`, counting the failures of the months before that the window reaches (`before`)."""
    window = timedelta(days=rules.repeat_window_days)
    history = [(datetime.fromisoformat(f["at"]), f["id"], f["failed"]) for f in [*before, *facts] if f["failed"]]
    out: set[str] = set()
    for f in facts:
        at = datetime.fromisoformat(f["at"])
        for item in f["failed"]:
            n = sum(1 for t, i, items in history if item in items and at - window <= t and (t, i) <= (at, f["id"]))
            if n >= rules.escalate_from:
                out.add(item)
    return sorted(out)


def month_figures(facts: list[Fact], rules: MerchantRules, before: list[Fact] | None = None) -> dict[str, Any]:
    """Points, grade, warning and escalation of one merchant-month, from its facts and those of the months before
    that its repeat window reaches (`earlier_months`)."""
    checks = [f for f in facts if f["kind"] == "check"]
    failures = [f for f in facts if f["failed"]]
    repeats = repeated(facts, before or [], rules)
    overdue = rules.escalate_when_overdue and any(f["kind"] == "overdue" for f in facts)
    deducted = round(sum(f["points"] for f in failures), 4)
    bonus = rules.bonus if len(checks) >= rules.bonus_min_checks and not failures else 0.0
    points = round(rules.base - deducted + bonus, 4)
    return {
        "checks": len(checks),
        "passed_checks": sum(1 for f in checks if not f["failed"]),
        "failures": len(failures),
        "deducted": deducted,
        "bonus": bonus,
        "points": points,
        "grade": rules.grade(points),
        "warned": len(failures) >= 1,
        "warning_at": failures[0]["id"] if failures else None,
        "escalated": bool(repeats) or overdue,
        "repeated_items": repeats,
        "overdue": overdue,
        "failed_items": sorted({i for f in failures for i in f["failed"]}),
    }


GRADES = ("A", "B", "C")  # best first


def worse(*grades: str) -> str:
    """The worst of some grades (C is worst)."""
    return max(grades, key=GRADES.index)


def neighbours(month: str) -> tuple[str, str, str]:
    """(the month before, the month, the month after), YYYY-MM."""
    year, mon = (int(x) for x in month.split("-"))
    index = year * 12 + mon - 1
    before, after = index - 1, index + 1
    return f"{before // 12:04d}-{before % 12 + 1:02d}", month, f"{after // 12:04d}-{after % 12 + 1:02d}"


def month_begins(month: str) -> datetime:
    """The first moment of a month (YYYY-MM) in city time."""
    year, mon = (int(x) for x in month.split("-"))
    return datetime(year, mon, 1, tzinfo=CITY_TZ)


def earlier_months(month: str, days: int) -> list[str]:
    """The months before `month` (YYYY-MM) that a repeat window of `days` days reaches from some moment of it
    (`repeated` counts a failure exactly `days` before), oldest first."""
    first = month_of(month_begins(month) - timedelta(days=days))
    out: list[str] = []
    m = neighbours(month)[0]
    while m >= first:
        out.insert(0, m)
        m = neighbours(m)[0]
    return out


def later_months(month: str, days: int) -> list[str]:
    """The months after `month` whose repeat window reaches back into it, oldest first."""
    out: list[str] = []
    m = neighbours(month)[2]
    while month in earlier_months(m, days):
        out.append(m)
        m = neighbours(m)[2]
    return out


def window_of(month: str, n: int) -> list[str]:
    """The `n` calendar months ending with `month` (YYYY-MM), oldest first."""
    year, mon = (int(x) for x in month.split("-"))
    index = year * 12 + mon - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - n + 1, index + 1)]


def merchant_class(months: dict[str, dict[str, Any]], registered: str, rules: MerchantRules) -> dict[str, Any]:
    """The class (分类 A/B/C) of a merchant from its months' figures alone, and why (`MerchantClassing`).

    `months` maps YYYY-MM → {"points", "grade", "escalated"} for the months with figures (assessed months).
    The window is the `window_months` calendar months ending with the latest assessed month, so the result
    depends on the figures only (never on the wall clock) and on no month older than the window. The mean
    points of the assessed months in the window give a grade; with fewer than `upgrade_min_months` assessed
    months the class may only fall below `registered`, not rise above it; a month escalated to enforcement in
    the window caps it at `escalated_class`.
    """
    if not months:
        return {"period": None, "grade": registered, "points": None, "basis": None}
    c = rules.classing
    latest = max(months)
    window = window_of(latest, c.window_months)
    assessed = [m for m in window if m in months]
    mean = round(sum(float(months[m]["points"]) for m in assessed) / len(assessed), 4)
    by_mean = rules.grade(mean)
    if len(assessed) >= c.upgrade_min_months:
        grade, rule = by_mean, "window_mean"
    else:
        grade = worse(registered, by_mean)
        rule = "registered" if grade == registered and by_mean != registered else "window_mean"
    escalated = [m for m in assessed if months[m].get("escalated")]
    if escalated and c.escalated_class and worse(grade, c.escalated_class) != grade:
        grade, rule = c.escalated_class, "escalated"
    return {
        "period": latest,
        "grade": grade,
        "points": months[latest]["points"],
        "basis": {
            "rule": rule,
            "window": [window[0], window[-1]],
            "assessed_months": assessed,
            "mean_points": mean,
            "mean_grade": by_mean,
            "registered": registered,
            "escalated_months": escalated,
        },
    }


def card_of(
    merchant_id: str, street: str | None, months: dict[str, dict[str, Any]], registered: str, rules: MerchantRules
) -> dict[str, Any]:
    """The whole `merchants` document of one merchant (its months and current class)."""
    cls = merchant_class(months, registered, rules)
    return {"_id": merchant_id, "street_code": street, "months": months, **cls}


class MerchantFold:
    """The merchant part of the fold in memory: month documents and cards from a sequence of facts (tests)."""

    def __init__(self, rules: MerchantRules, registered: dict[str, str]) -> None:
        self.rules = rules
        self.registered = registered
        self.facts: dict[str, list[Fact]] = {}  # period id → facts
        self.cards: dict[str, dict[str, Any]] = {}

    def apply(self, merchant_id: str, fact: Fact) -> bool:
        """Add one fact; False when it was there already."""
        month = month_of(datetime.fromisoformat(fact["at"]))
        key = period_id(merchant_id, month)
        facts = add_fact(self.facts.get(key, []), fact)
        if facts is None:
            return False
        self.facts[key] = facts
        days = self.rules.repeat_window_days
        card = self.cards.get(merchant_id) or {"months": {}}
        months = dict(card["months"])
        for m in (month, *later_months(month, days)):  # the months after count this month's failures as repeats
            mine = self.facts.get(period_id(merchant_id, m))
            if mine is not None:
                prior = [f for e in earlier_months(m, days) for f in self.facts.get(period_id(merchant_id, e), [])]
                months[m] = month_entry(month_figures(mine, self.rules, prior))
        self.cards[merchant_id] = card_of(merchant_id, None, months, self.registered[merchant_id], self.rules)
        return True


def month_entry(fig: dict[str, Any]) -> dict[str, Any]:
    """What a card keeps of one month."""
    return {"points": fig["points"], "grade": fig["grade"], "escalated": fig["escalated"]}


def ranking(rows: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """Merchants of one street and month, best first (points, then id for reading order); equal points share a
    rank, and the red list (top N without a failure) takes a tie at its boundary whole."""
    ordered = sorted(rows, key=lambda r: (-r["points"], r["failures"], r["merchant_id"]))
    places = standings([r["points"] for r in ordered], top, 0, len(ordered), half=False)
    return [
        {
            "rank": s.rank,
            "id": r["merchant_id"],
            "name": r.get("name", ""),
            "score": r["points"],
            "board": "red" if s.red and not r["failures"] else None,
            "bottom": False,
            "tied": s.tied,
            "grade": r["grade"],
            "figures": {"checks": r["checks"], "failures": r["failures"]},
        }
        for r, s in zip(ordered, places, strict=True)
    ]
