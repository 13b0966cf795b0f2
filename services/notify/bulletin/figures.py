"""Reading one week's pre-aggregated documents: a handful of finds by `_id` or by the indexed `week` field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.notify.bulletin.projection import FACETS, LISTED, MERCHANTS, RANKINGS, WEEKS
from xiuhua.store import Store

LISTED_LIMIT = 200  # the bulletin lists the worst cases; the count is always the full one


@dataclass
class WeekData:
    """Everything the projection holds about one week."""

    week: str
    counters: dict[str, int] = field(default_factory=dict)
    facets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    listed: list[dict[str, Any]] = field(default_factory=list)
    ranking: dict[str, list[dict[str, Any]]] | None = None  # scoring's tables by unit role, when published
    merchants: list[dict[str, Any]] = field(default_factory=list)
    unassessed: dict[str, list[str]] = field(default_factory=dict)  # role → units scoring did not rank


async def load_week(store: Store, week: str) -> WeekData:
    """The week's counters, facets, listed cases, scoring counters and merchant changes."""
    doc = await store[WEEKS].find_one({"_id": week}) or {}
    counters = {k: int(v) for k, v in doc.items() if isinstance(v, int) and not isinstance(v, bool)}
    facets: dict[str, list[dict[str, Any]]] = {}
    async for f in store[FACETS].find({"week": week}):
        facets.setdefault(f["facet"], []).append(f)
    listed = [d async for d in store[LISTED].find({"week": week}).limit(LISTED_LIMIT)]
    ranking = await store[RANKINGS].find_one({"_id": week})
    merchants = [d async for d in store[MERCHANTS].find({"week": week})]
    return WeekData(
        week,
        counters,
        facets,
        listed,
        ranking["tables"] if ranking else None,
        merchants,
        dict(ranking.get("unassessed") or {}) if ranking else {},
    )


async def ensure_indexes(store: Store) -> None:
    """Reads are by `week` equality."""
    for coll in (FACETS, LISTED, MERCHANTS):
        await store[coll].create_index("week")
