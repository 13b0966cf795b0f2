"""What an alert says (告警文案): Chinese first, one English line. Pure.

Messages name the case, category, unit and deadline; never a reporter's name or phone number (the events notify
reads carry only masked reporters, and nothing here copies them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

DETAIL_MAX = 200

TITLES: dict[str, tuple[str, str]] = {
    "new_case": ("新案件待处置", "New case to handle"),
    "deadline_warning": ("案件临期预警", "Case deadline approaching"),
    "overdue": ("案件已超期", "Case overdue"),
    "escalation": ("案件升级督办", "Case escalated"),
    "sensor_emergency": ("物联感知紧急告警", "Urgent sensor alarm"),
    "bottom_ranking": ("考核排名末位（黑榜）", "Bottom of the ranking (black list)"),
    "merchant_escalation": ("门前责任区商户升级处置", "Merchant duty failure escalated"),
    "merchant_notice": ("门前责任整改通知（批评教育）", "Front-of-door duty not met: put it right"),
    "delivery_failed": ("告警投递失败", "Alert delivery failed"),
}


def _local(value: Any, tz: ZoneInfo) -> str:
    if isinstance(value, datetime):
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return value
    return ""


def build(kind: str, facts: dict[str, Any], *, urgent: bool, level: int = 0, tz: ZoneInfo) -> dict[str, Any]:
    """The message of an alert: a title, Chinese lines, one English line, and the facts channels may show."""
    zh, en = TITLES.get(kind, (kind, kind))
    if kind == "escalation":
        zh, en = f"{zh}（第{level}级）", f"{en} (level {level})"
    case_id = facts.get("case_id") or ""
    lines: list[str] = []
    if case_id:
        lines.append(f"案件编号：{case_id}")
    if facts.get("category"):
        lines.append(f"问题类别：{facts['category']}")
    if facts.get("address"):
        lines.append(f"位置：{facts['address']}")
    if facts.get("map"):
        lines.append(f"地图：{facts['map']}")
    if facts.get("unit"):
        lines.append(f"责任单位：{facts['unit']}")
    if due := _local(facts.get("due_at"), tz):
        lines.append(f"处置时限：{due}")
    if facts.get("period"):
        lines.append(f"考核周期：{facts['period']}")
    if facts.get("rank") is not None:
        lines.append(f"排名：第{facts['rank']}名")
    if facts.get("merchant"):
        lines.append(f"商户：{facts['merchant']}")
    if facts.get("detail"):
        detail = str(facts["detail"])  # robots and SMS gateways cap a message's size: keep free text short
        lines.append(detail if len(detail) <= DETAIL_MAX else detail[: DETAIL_MAX - 1] + "…")
    en_line = f"{en}: {case_id or facts.get('period') or ''}".rstrip(": ")
    return {
        "kind": kind,
        "title": ("【紧急】" if urgent else "") + zh,
        "title_en": en,
        "lines": lines,
        "line_en": en_line,
        "case_id": case_id,
        "unit": facts.get("unit") or "",
        "due_at": _local(facts.get("due_at"), tz),
        "level": level,
        "urgent": urgent,
        **{k: facts[k] for k in ("category_code", "rule_id", "period", "street_code") if facts.get(k)},
    }


def as_text(message: dict[str, Any]) -> str:
    """Plain text: title, the lines, the English line."""
    return "\n".join([message["title"], *message.get("lines", []), message.get("line_en", "")]).rstrip()


def as_markdown(message: dict[str, Any]) -> str:
    """Markdown as the robots render it (a heading, bold labels stay plain, a quoted English line)."""
    body = "\n".join(f"- {ln}" for ln in message.get("lines", []))
    return f"### {message['title']}\n{body}\n> {message.get('line_en', '')}".rstrip()
