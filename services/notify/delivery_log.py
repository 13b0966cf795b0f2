"""The delivery log (投递日志): every planned alert of a case with its status, attempts and last error.

The `deliveries` collection is the log; this module reads it for people (`xiuhua deliveries`) and masks addresses:
robot and webhook URLs carry their tokens, phones and e-mails are personal.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

FIELDS = (
    "kind",
    "level",
    "unit_id",
    "contact_id",
    "channel",
    "urgent",
    "status",
    "attempts",
    "created_at",
    "next_at",
    "delivered_at",
    "failed_at",
    "deferred",
    "last_error",
    "held_at",
    "digest",
)


def mask_address(address: str) -> str:
    """An address as the log shows it: a URL's host, a phone's last four digits, an e-mail's domain."""
    if re.match(r"^https?://", address):
        return f"{urlsplit(address).scheme}://{urlsplit(address).netloc}/…"
    if "@" in address:
        return "***@" + address.rsplit("@", 1)[1]
    digits = re.sub(r"\D", "", address)
    if len(digits) >= 7 and len(digits) >= len(address) - 2:
        return "*" * (len(digits) - 4) + digits[-4:]
    return address  # a file name in var/outbox


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def entry(doc: dict[str, Any]) -> dict[str, Any]:
    """One delivery as the log shows it (no secrets, masked address, times in ISO 8601)."""
    out: dict[str, Any] = {"notification_id": doc["_id"], "case_id": doc.get("case_id")}
    out.update({k: _iso(doc.get(k)) for k in FIELDS})
    out["address"] = mask_address(str(doc.get("address", "")))
    out["title"] = (doc.get("message") or {}).get("title", "")
    out["history"] = [{k: _iso(v) for k, v in h.items()} for h in doc.get("history", [])]
    return out


async def by_case(col: Any, case_id: str) -> list[dict[str, Any]]:
    """Every delivery of a case, oldest first, as log entries."""
    docs = [d async for d in col.find({"case_id": case_id}).sort([("created_at", 1), ("_id", 1)])]
    return [entry(d) for d in docs]


def render(case_id: str, entries: list[dict[str, Any]]) -> str:
    """The log as a table for a terminal."""
    if not entries:
        return f"no deliveries for case {case_id}"
    lines = [
        f"deliveries of case {case_id}: {len(entries)}",
        f"{'status':10s} {'att':>3s}  {'kind':20s} {'lvl':>3s}  {'recipient':16s} {'channel':9s} when / error",
    ]
    for e in entries:
        when = e["delivered_at"] or e["failed_at"] or (f"next {e['next_at']}" if e["status"] == "pending" else "")
        extra = f" ({e['deferred']})" if e["status"] == "pending" and e.get("deferred") else ""
        extra += " (in a digest)" if e["status"] == "delivered" and e.get("digest") else ""
        err = f"  {e['last_error']}" if e.get("last_error") and e["status"] != "delivered" else ""
        lines.append(
            f"{e['status']:10s} {e['attempts']:>3d}  {e['kind']:20s} {e['level'] or 0:>3d}  {e['contact_id']:16s} "
            f"{e['channel']:9s} {when}{extra}{err}"
        )
    return "\n".join(lines)
