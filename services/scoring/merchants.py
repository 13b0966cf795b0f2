"""Merchant duty points (门前三包 / 五包 / 六包 积分制) as a pure fold. No I/O.

Each merchant starts every month with `base` points. Sources of a failure, each counted once:
- a duty check (`report.v1.in.merchant_check`, keyed by `check_id`) with at least one failed item loses the
  points of each failed item's severity;
- a violation case (`case.v1.opened` with `merchant_id`, keyed by `case_id`) whose source is not
  `merchant_check` loses the points of `case_severity` (`serious` when urgent). Cases with source
  `merchant_check` are the checks themselves or the enforcement cases this service asked for, already counted.
A month with at least `bonus_min_checks` checks and no failure earns `bonus`. The first failure of a month is
a warning (批评教育); the `escalate_from`-th failure escalates the merchant to enforcement, once per month.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts.cases import CaseOpened
from contracts.reports import MerchantCheck
from services.scoring.periods import CITY_TZ, periods_of
from xiuhua.city.assessment import MerchantRules

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


def month_figures(facts: list[Fact], rules: MerchantRules) -> dict[str, Any]:
    """Points, grade, warning and escalation of one merchant-month, from its facts alone."""
    checks = [f for f in facts if f["kind"] == "check"]
    failures = [f for f in facts if f["failed"]]
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
        "escalated": len(failures) >= rules.escalate_from,
        "failed_items": sorted({i for f in failures for i in f["failed"]}),
    }


def current_grade(months: dict[str, dict[str, Any]], default: str) -> tuple[str | None, str, float | None]:
    """(period, grade, points) of the latest month with figures; the city's grade when there is none."""
    if not months:
        return None, default, None
    latest = max(months)
    return latest, months[latest]["grade"], months[latest]["points"]


def ranking(rows: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """Merchants of one street and month, best first (points, then fewer failures, then id); red list on top."""
    ordered = sorted(rows, key=lambda r: (-r["points"], r["failures"], r["merchant_id"]))
    out = []
    for i, r in enumerate(ordered, 1):
        out.append({
            "rank": i, "id": r["merchant_id"], "name": r.get("name", ""), "score": r["points"],
            "board": "red" if i <= top and not r["failures"] else None, "bottom": False,
            "grade": r["grade"], "figures": {"checks": r["checks"], "failures": r["failures"]},
        })
    return out
