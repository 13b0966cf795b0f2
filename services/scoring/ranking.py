"""Rankings within each unit role (and of each street's merchants), red and black lists, the bottom N flagged
(末位). Pure.

Equal scores share a rank and no list separates them (`xiuhua.ranks`: a tie at a list's boundary is listed
whole, `tied` on each row says so). A unit (or merchant) with nothing assessed in the period is not
ranked at all; it is listed apart ("no cases this period").
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from xiuhua.city.assessment import Ranking
from xiuhua.ranks import standings

FIGURES = ("due", "closed", "overdue", "on_time_rate", "on_time_closure_rate", "closure_rate", "satisfaction_rate")


def assessed(doc: dict[str, Any]) -> bool:
    """Whether a unit's period has anything assessed: a case that fell due, or a deduction-bearing finding."""
    deductions = doc.get("deductions") or {}
    return int(doc.get("due", 0) or 0) > 0 or any(v for v in deductions.values())


def unit_tables(
    docs: list[dict[str, Any]], rules: Ranking, names: dict[str, str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """(role → ranked rows best first, role → units with nothing assessed). Equal scores: by unit id for reading
    order only, with the same rank. The bottom N are flagged only in the periods `rules.bottom_periods` name."""
    by_role: dict[str, list[dict[str, Any]]] = defaultdict(list)
    apart: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        if d.get("role") in rules.roles_excluded:
            continue
        if not assessed(d):
            apart.setdefault(d["role"], []).append(
                {"id": d["unit_id"], "name": names.get(d["unit_id"], ""), "reason": "no_cases", "figures": _figures(d)}
            )
            continue
        by_role[d["role"]].append(d)
    out: dict[str, list[dict[str, Any]]] = {}
    for role in sorted(by_role):
        rows = sorted(by_role[role], key=lambda d: (-d["score"], d["unit_id"]))
        flag_bottom = all(d.get("kind") in rules.bottom_periods for d in rows)
        places = standings(
            [d["score"] for d in rows],
            rules.red_list,
            rules.black_list,
            rules.bottom_flagged if flag_bottom else len(rows),
        )
        out[role] = [
            {
                "rank": s.rank,
                "id": d["unit_id"],
                "name": names.get(d["unit_id"], ""),
                "score": d["score"],
                "board": "red" if s.red else "black" if s.black else None,
                "bottom": s.bottom,
                "tied": s.tied,
                "figures": _figures(d),
            }
            for d, s in zip(rows, places, strict=True)
        ]
    return out, {role: sorted(rows, key=lambda r: r["id"]) for role, rows in sorted(apart.items())}


def _figures(d: dict[str, Any]) -> dict[str, Any]:
    rates = d.get("rates") or {}
    return {k: d.get(k, rates.get(k)) for k in FIGURES}
