"""Digests (告警汇总): what a recipient over its rate limit gets instead of a flood. Pure.

A recipient's alerts on a channel go through a lane: routine alerts through one token bucket, urgent ones through
a bucket of their own, so routine traffic never holds an urgent alert back. In a round a lane's due alerts are
sent one by one while its bucket has a token for each; those beyond are held until the next token, and then
everything held (and whatever came meanwhile) goes out as one digest for one token: counts by kind, the most
urgent cases named with their place and deadline, the case ids. So a lane's backlog lasts one refill at most.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.notify.messages import TITLES

NAMED = 5  # the most urgent cases a digest names with place and deadline
LANE_MAX = 2000  # a lane's alerts one round takes at most (one digest; the rest wait for the next token)
IDS_SHOWN = 50  # case ids a digest's text lists (its `case_ids` field holds them all)
HELD = "held_at"  # set on a delivery when the rate limit first holds it back
PLACES = "digest_places"  # the places a digest named from notify's bulletin, kept to send the same text again

# How pressing a kind is, most first; within a kind a higher escalation level, then the nearer deadline.
KIND_ORDER = (
    "sensor_emergency",
    "escalation",
    "overdue",
    "deadline_warning",
    "merchant_escalation",
    "new_case",
    "bottom_ranking",
    "delivery_failed",
)


def lane(doc: dict[str, Any]) -> str:
    """The bucket a delivery spends from: its recipient and channel, urgent ones apart."""
    base = f"{doc['contact_id']}:{doc['channel']}"
    return f"{base}:urgent" if doc.get("urgent") else base


def held(doc: dict[str, Any]) -> bool:
    """Whether the rate limit held this delivery back before."""
    return doc.get(HELD) is not None


def pick(due: list[dict[str, Any]], limit: int, lane_max: int = LANE_MAX) -> list[dict[str, Any]]:
    """A round's share of the due alerts (in their order): whole lanes, as many as fit in `limit`, at least one.

    Whole, because a lane's held alerts go together as one digest, and a fresh alert must not go alone while its
    lane's held ones wait for a later round: cut by a plain count, a flood's backlog drained a part per refill."""
    lanes: dict[str, list[dict[str, Any]]] = {}
    for d in due:
        lanes.setdefault(lane(d), []).append(d)
    chosen: set[str] = set()
    for group in lanes.values():
        group = group[:lane_max]
        if chosen and len(chosen) + len(group) > limit:
            continue  # a smaller lane after it may still fit
        chosen.update(d["_id"] for d in group)
    return [d for d in due if d["_id"] in chosen]


@dataclass
class Split:
    """What a lane's round does with its due alerts."""

    singles: list[dict[str, Any]] = field(default_factory=list)  # sent one by one
    digest: list[dict[str, Any]] = field(default_factory=list)  # sent together, as one message
    held: list[dict[str, Any]] = field(default_factory=list)  # wait for the next token


def bundles(group: list[dict[str, Any]]) -> bool:
    """Whether a shortfall of tokens sends this lane's alerts as one digest (taking a single token): only once
    some were held, i.e. at the refill that follows a hold."""
    return any(held(d) for d in group)


def split(group: list[dict[str, Any]], taken: int) -> Split:
    """A lane's due alerts (in order) given the tokens taken for them (see `TokenBuckets` and `bundles`)."""
    if taken >= len(group):
        return Split(singles=group)
    if taken == 0:
        return Split(held=group)
    if bundles(group):
        return Split(digest=group)
    return Split(singles=group[:taken], held=group[taken:])


def _due(doc: dict[str, Any]) -> str:
    return str((doc.get("message") or {}).get("due_at") or "9999")  # city time, sortable; no deadline last


def pressing(doc: dict[str, Any]) -> tuple[Any, ...]:
    """Sort key, most urgent first."""
    kind = doc.get("kind", "")
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return not doc.get("urgent"), rank, -int(doc.get("level") or 0), _due(doc), doc.get("created_at"), doc["_id"]


def notification_id(docs: list[dict[str, Any]]) -> str:
    """The digest's own id, the same whenever the same alerts are sent together (a re-send is recognisable)."""
    digest = hashlib.sha256("\n".join(sorted(d["_id"] for d in docs)).encode()).hexdigest()[:16]
    return f"digest:{lane(docs[0])}:{digest}"


def place_said(doc: dict[str, Any]) -> str:
    """The place an alert's own message gives (its 位置 line), '' if none."""
    lines = (doc.get("message") or {}).get("lines", [])
    return next((ln.removeprefix("位置：") for ln in lines if ln.startswith("位置：")), "")


def _local(value: Any, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%H:%M") if isinstance(value, datetime) else ""


def _named(doc: dict[str, Any], place: str) -> str:
    message = doc.get("message") or {}
    zh = TITLES.get(doc["kind"], (doc["kind"],))[0]
    if doc["kind"] == "escalation":
        zh = f"{zh}（第{doc.get('level', 0)}级）"
    what = doc.get("case_id") or message.get("period") or ""
    parts = [
        ("【紧急】" if doc.get("urgent") else "") + zh,
        what,
        place_said(doc) or place,
        message.get("unit"),
        f"时限 {message['due_at']}" if message.get("due_at") else "",
    ]
    return " · ".join(p for p in parts if p)


def build(docs: list[dict[str, Any]], places: dict[str, str], *, tz: ZoneInfo) -> dict[str, Any]:
    """The digest message: a title with how many since when, counts by kind, the most urgent named, the case ids.

    `places` maps case ids to place names for the named alerts whose own message gives none."""
    ranked = sorted(docs, key=pressing)
    since = _local(min((d["created_at"] for d in docs if d.get("created_at")), default=None), tz)
    urgent = any(d.get("urgent") for d in docs)
    counts: dict[str, int] = {}
    for d in ranked:
        counts[d["kind"]] = counts.get(d["kind"], 0) + 1
    case_ids = list(dict.fromkeys(d["case_id"] for d in ranked if d.get("case_id")))
    count_zh = "，".join(f"{TITLES.get(k, (k,))[0]} {n} 条" for k, n in counts.items())
    count_en = ", ".join(f"{k} {n}" for k, n in counts.items())
    top = [_named(d, places.get(d.get("case_id") or "", "")) for d in ranked[:NAMED]]
    shown = "、".join(case_ids[:IDS_SHOWN]) + (f" 等{len(case_ids)}件" if len(case_ids) > IDS_SHOWN else "")
    lines = [f"汇总：{count_zh}", "最紧急：", *(f"{i}. {t}" for i, t in enumerate(top, 1))]
    if case_ids:
        lines.append(f"案件编号：{shown}")
    return {
        "kind": "digest",
        "title": ("【紧急】" if urgent else "") + f"告警汇总：{since}以来{len(docs)}条",
        "title_en": f"Alert digest: {len(docs)} since {since}",
        "lines": lines,
        "line_en": f"{len(docs)} alerts held by the rate limit since {since}: {count_en}",
        "case_id": "",
        "unit": (ranked[0].get("message") or {}).get("unit", ""),
        "due_at": "",
        "level": 0,
        "urgent": urgent,
        "counts": counts,
        "case_ids": case_ids,
        "notification_ids": [d["_id"] for d in ranked],
        "since": since,
        "summary": count_zh,
        "top": top[0] if top else "",
    }
