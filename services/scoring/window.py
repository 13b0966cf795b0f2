"""What a rebuild can reproduce when the oldest messages have expired from their streams. Pure, no I/O.

The fold reads `XH_CASES` and the duty checks archived in `XH_CHECKS` (both kept 800 days; `XH_REPORTS`, where
checks arrive, keeps 90). Once a stream has dropped its oldest messages, a replay cannot reproduce what they
contributed. `Window` holds, per source, the earliest moment the stream still holds (None: complete from its
first message). A stored document is outside the window when it depends on a fact older than that moment:

- `case_facts`: a case with any fact before the cases' horizon (its start may be gone);
- `unit_periods`: every document such a case contributes to, in the live store or in the rebuild;
- `merchant_periods`: a month with a check fact before the checks' horizon or a case fact before the cases', and
  the month after it (a month's escalation counts the previous month's failures of the same item);
- `merchants`: compared on the months inside the window only (older months are left out of `months` on both
  sides), and left out entirely when a month its class is judged on (`merchant_class`'s window) is outside.

Facts are dated by the event (`occurred_at`, `checked_at`, `reported_at`), which is never later than the moment
the stream stored it, so a fact dated at or after the horizon was published after it and is still there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.scoring import units
from services.scoring.merchants import neighbours, window_of
from xiuhua.city.assessment import MerchantRules

Docs = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Window:
    """The earliest moment each source still holds; None where nothing has expired."""

    cases_from: datetime | None = None
    checks_from: datetime | None = None

    @property
    def complete(self) -> bool:
        """True when the whole history is still on the bus."""
        return self.cases_from is None and self.checks_from is None


def _before(at: str, horizon: datetime | None) -> bool:
    return horizon is not None and datetime.fromisoformat(at) < horizon


def truncated_cases(facts: Docs, window: Window) -> set[str]:
    """Case ids (of `case_facts` documents) with a fact older than the cases' horizon."""
    return {cid for cid, d in facts.items() if any(_before(f["at"], window.cases_from) for f in d["facts"])}


def _month_outside(doc: dict[str, Any], window: Window) -> bool:
    for f in doc.get("facts", []):
        horizon = window.checks_from if f["kind"] == "check" else window.cases_from
        if _before(f["at"], horizon):
            return True
    return False


def _previous_month(key: str) -> str:
    merchant_id, _, month = key.rpartition(":")
    return f"{merchant_id}:{neighbours(month)[0]}"


def outside(live: dict[str, Docs], rebuilt: dict[str, Docs], window: Window, rules: MerchantRules) -> dict[str, set]:
    """Per collection, the `_id`s that the rebuild cannot reproduce (see the module's docstring)."""
    out: dict[str, set[str]] = {
        "case_facts": set(),
        "unit_periods": set(),
        "merchant_periods": set(),
        "merchants": set(),
    }
    if window.complete:
        return out
    both_cases = {**rebuilt.get("case_facts", {}), **live.get("case_facts", {})}
    cut = truncated_cases(both_cases, window)
    out["case_facts"] = cut
    for side in (live, rebuilt):
        for cid in cut:
            doc = side.get("case_facts", {}).get(cid)
            if doc is not None:
                out["unit_periods"] |= set(units.contribution(doc["facts"]))
    expired = {key for side in (live, rebuilt) for key, doc in side.get("merchant_periods", {}).items()
               if _month_outside(doc, window)}
    # A month's escalation counts the previous month's failures (the repeat window), so it follows them out.
    out["merchant_periods"] = expired | {
        key for side in (live, rebuilt) for key in side.get("merchant_periods", {})
        if _previous_month(key) in expired
    }
    for side in (live, rebuilt):
        for mid, card in side.get("merchants", {}).items():
            if card.get("period") and any(
                f"{mid}:{m}" in out["merchant_periods"] for m in window_of(card["period"], rules.classing.window_months)
            ):
                out["merchants"].add(mid)
    return out


def comparable(collection: str, doc: dict[str, Any], left_out: set[str]) -> dict[str, Any]:
    """The part of a document a rebuild inside the window must reproduce: a card without its expired months."""
    if collection != "merchants":
        return doc
    months = {m: v for m, v in doc.get("months", {}).items() if f"{doc['_id']}:{m}" not in left_out}
    return {**doc, "months": months}
