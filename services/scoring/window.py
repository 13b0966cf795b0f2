"""What a rebuild can reproduce when the oldest messages have expired from their streams. Pure, no I/O.

The fold reads `XH_CASES` and the duty checks archived in `XH_CHECKS` (both kept 800 days; `XH_REPORTS`, where
checks arrive, keeps 90). Once a stream has dropped its oldest messages, a replay cannot reproduce what they
contributed. `Window` holds, per source, the earliest moment the stream still holds (None: complete from its
first message). A stored document is outside the window when it depends on a fact older than that moment:

- `case_facts`: a case with any fact before the cases' horizon (its start may be gone), or without its start —
  its first dispatch, or its opening for a merchant's case, whose facts begin there (it expired: what is left is
  what came after);
- `unit_periods`: every document such a case contributes to, in the live store or in the rebuild, and, once the
  cases' stream has dropped messages, every period that began before the purge's cutoff of the facts (below);
- `merchant_periods`: a month with a check fact before the checks' horizon or a case fact before the cases', and
  the months after it whose repeat window reaches it (a month's escalation counts those months' failures of the
  same item);
- `merchants`: compared on the months inside the window only (older months are left out of `months` on both
  sides), and left out entirely when a month its class is judged on (`merchant_class`'s window) is outside.

The facts of a case ended past the closed-cases horizon (and the case stream's age) are purged, in the live
store by its periodic job and in the rebuild before it is compared (`store.RETAINED`). Those past the cutoff that
the live job has not reached yet are left out. A purged case's periods all began before that cutoff, since it
ended before it; once the stream has dropped the first events of such a case, nothing says which periods it
counted in, so they are all left out.

Facts are dated by the event (`occurred_at`, `checked_at`, `reported_at`), which is never later than the moment
the stream stored it, so a fact dated at or after the horizon was published after it and is still there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.scoring import units
from services.scoring.merchants import earlier_months, window_of
from services.scoring.periods import period_begins
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
    """Case ids (of `case_facts` documents) with a fact older than the cases' horizon, or, once the stream has
    dropped messages, without their start (`starts`)."""
    if window.cases_from is None:
        return set()
    return {
        cid
        for cid, d in facts.items()
        if any(_before(f["at"], window.cases_from) for f in d["facts"]) or not any(map(starts, d["facts"]))
    }


def starts(fact: units.Fact) -> bool:
    """Whether a case's facts begin with this one: its first dispatch, or a (merchant's) opening."""
    return fact["t"] == "opened" or (fact["t"] == "dispatched" and fact["round"] == 1)


def without_older_openings(docs: Docs) -> Docs:
    """The `case_facts` documents as this build keeps them: an older build kept every case's opening, this one a
    merchant's only (`units.fact_of`), so an ordinary case's opening is set aside before a comparison, and a case
    that has nothing else is not there."""
    out: Docs = {}
    for cid, d in docs.items():
        facts = [f for f in d["facts"] if f["t"] != "opened" or f.get("merchant")]
        if facts:
            out[cid] = d if len(facts) == len(d["facts"]) else {**d, "facts": facts}
    return out


def purgeable(facts: Docs, purged_before: float | None) -> set[str]:
    """Case ids whose facts are past the purge's cutoff (seconds): gone from the rebuild, soon from the live store."""
    if purged_before is None:
        return set()
    return {cid for cid, d in facts.items() if d.get("closed_s") is not None and d["closed_s"] < purged_before}


def _month_outside(doc: dict[str, Any], window: Window) -> bool:
    for f in doc.get("facts", []):
        horizon = window.checks_from if f["kind"] == "check" else window.cases_from
        if _before(f["at"], horizon):
            return True
    return False


def _months_reached(key: str, days: int) -> set[str]:
    """The month documents whose failures the repeat window of this one (`merchant:YYYY-MM`) counts."""
    merchant_id, _, month = key.rpartition(":")
    return {f"{merchant_id}:{m}" for m in earlier_months(month, days)}


def outside(
    live: dict[str, Docs],
    rebuilt: dict[str, Docs],
    window: Window,
    rules: MerchantRules,
    purged_before: float | None = None,
) -> dict[str, set]:
    """Per collection, the `_id`s that the rebuild cannot reproduce (see the module's docstring); `purged_before`:
    the cutoff (seconds) of the facts' purge the rebuild applied."""
    out: dict[str, set[str]] = {
        "case_facts": {c for side in (live, rebuilt) for c in purgeable(side.get("case_facts", {}), purged_before)},
        "unit_periods": set(),
        "merchant_periods": set(),
        "merchants": set(),
    }
    if window.complete:
        return out
    cut: set[str] = set()
    for side in (live, rebuilt):
        cut |= truncated_cases(side.get("case_facts", {}), window)
    out["case_facts"] |= cut
    for side in (live, rebuilt):
        for cid in cut:
            doc = side.get("case_facts", {}).get(cid)
            if doc is not None:
                out["unit_periods"] |= set(units.contribution(doc["facts"]))
    if window.cases_from is not None and purged_before is not None:
        out["unit_periods"] |= {
            key
            for side in (live, rebuilt)
            for key, doc in side.get("unit_periods", {}).items()
            if period_begins(doc["period"]).timestamp() < purged_before
        }
    expired = {
        key
        for side in (live, rebuilt)
        for key, doc in side.get("merchant_periods", {}).items()
        if _month_outside(doc, window)
    }
    # A month's escalation counts the failures of the months its repeat window reaches, so it follows them out.
    out["merchant_periods"] = expired | {
        key
        for side in (live, rebuilt)
        for key in side.get("merchant_periods", {})
        if _months_reached(key, rules.repeat_window_days) & expired
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
