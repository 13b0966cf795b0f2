"""Rates, targets and the composite score of one unit and period, from its counters alone. Pure.

Rates are shares (0–1), None when their denominator is zero. A term whose rate is None (nothing was due)
scores full points: a unit is not punished for having no cases of a kind.
"""

from __future__ import annotations

from typing import Any

from xiuhua.city.assessment import AssessmentFile, Term


def _share(num: int, den: int) -> float | None:
    return None if den <= 0 else round(num / den, 6)


def rates(c: dict[str, int], rules: AssessmentFile) -> dict[str, float | None]:
    """on-time handling (按期处置率), on-time closure (按期结案率), closure (结案率), rework, response, satisfaction."""
    g = c.get
    exclude = rules.due.exclude_deferred
    due = g("due", 0) - (g("deferred", 0) if exclude else 0)
    on_time = g("resolved_on_time", 0) - (g("deferred_resolved_on_time", 0) if exclude else 0)
    good = g("satisfied", 0) + (g("basic", 0) if rules.due.basic_counts_as_satisfied else 0)
    return {
        "on_time_rate": _share(on_time, due),
        "on_time_closure_rate": _share(g("closed_on_time", 0), due),
        "closure_rate": _share(g("closed", 0), due),
        "rework_rate": _share(g("reworked_cases", 0), g("due", 0)),
        "response_rate": _share(g("acknowledged_in_time", 0), g("dispatched", 0)),
        "satisfaction_rate": _share(good, g("rated", 0)),
        "urgent_closure_rate": _share(g("urgent_closed", 0), g("urgent_due", 0)),
        "urgent_on_time_rate": _share(g("urgent_closed_on_time", 0), g("urgent_due", 0)),
    }


def _shortfall_points(rate: float | None, full_at: float) -> float:
    """Percentage points below the threshold (0 when at or above it, or when nothing was due)."""
    if rate is None:
        return 0.0
    return max(0.0, (full_at - rate) * 100)


def term_points(term: Term, r: dict[str, float | None]) -> float:
    """One term: full points minus per_point for each percentage point below its thresholds, floor 0."""
    short = _shortfall_points(r.get(term.rate), term.full_at)
    short += sum(_shortfall_points(r.get(rate), full_at) for rate, full_at in term.also)
    return max(0.0, term.points - term.per_point * short)


def figures(c: dict[str, int], rules: AssessmentFile) -> dict[str, Any]:
    """Rates, target flags, score terms, deductions and the composite score (rounded to 2 decimals)."""
    r = rates(c, rules)
    terms = {t.id: round(term_points(t, r), 4) for t in rules.terms}
    deductions = {d.id: round(d.points * c.get(d.counter, 0), 4) for d in rules.deductions}
    score = round(sum(terms.values()) - sum(deductions.values()), 2)
    t = rules.targets
    flags = []
    if r["on_time_rate"] is not None and r["on_time_rate"] < t.on_time_rate:
        flags.append("on_time_below_target")
    if r["satisfaction_rate"] is not None and r["satisfaction_rate"] < t.satisfaction_rate:
        flags.append("satisfaction_below_target")
    return {"rates": r, "terms": terms, "deductions": deductions, "score": score, "flags": flags}
