"""Unit rankings within each role, red and black lists, the bottom N flagged (末位). Pure."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from xiuhua.city.assessment import Ranking

FIGURES = ("due", "closed", "overdue", "on_time_rate", "on_time_closure_rate", "closure_rate", "satisfaction_rate")


def unit_tables(docs: list[dict[str, Any]], rules: Ranking, names: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """role → rows best first. Ties: higher on-time closure rate, then unit id (deterministic)."""
    by_role: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in docs:
        if d.get("role") in rules.roles_excluded:
            continue
        by_role[d["role"]].append(d)
    out: dict[str, list[dict[str, Any]]] = {}
    for role in sorted(by_role):
        rows = sorted(
            by_role[role],
            key=lambda d: (-d["score"], -((d.get("rates") or {}).get("on_time_closure_rate") or 0.0), d["unit_id"]),
        )
        n = len(rows)
        # Red and black lists never overlap: each takes at most half of the role.
        red_n, black_n = min(rules.red_list, n // 2), min(rules.black_list, n // 2)
        table = []
        for i, d in enumerate(rows, 1):
            board = "red" if i <= red_n else "black" if i > n - black_n else None
            rates = d.get("rates") or {}
            table.append({
                "rank": i,
                "id": d["unit_id"],
                "name": names.get(d["unit_id"], ""),
                "score": d["score"],
                "board": board,
                # Flag the bottom N only when the role has more units than that: with three units or fewer
                # everyone would be 'bottom three'.
                "bottom": n > rules.bottom_flagged and i > n - rules.bottom_flagged,
                "figures": {k: d.get(k, rates.get(k)) for k in FIGURES},
            })
        out[role] = table
    return out
