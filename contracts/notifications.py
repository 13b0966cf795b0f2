"""What notify did, `notify.v1.<event>` (docs/services/notify-alerts.md)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from contracts import subjects
from contracts.envelope import Event


class NotificationDelivered(Event):
    """An alert reached a channel (the receiving end accepted it)."""

    event_type: ClassVar[str] = "notify.delivered"
    subject_prefix: ClassVar[str] = subjects.NOTIFY.format(event="delivered")

    notification_id: str = Field(description="Stable: one per case, kind, level and recipient")
    kind: str = Field(description="new_case, deadline_warning, overdue, escalation ...")
    channel: str = Field(description="file, webhook, wecom, dingtalk, feishu, email, sms")
    recipient: str = Field(description="Recipient id (never a phone number or address in clear)")
    unit_id: str | None = None
    case_id: str | None = None
    attempts: int = Field(default=1, ge=1)

    example_fields: ClassVar[dict[str, object]] = {
        "notification_id": "new_case:C-01935d1e7a4b:0:CD-SAN-duty",
        "kind": "new_case",
        "channel": "file",
        "recipient": "CD-SAN-duty",
        "unit_id": "CD-SAN",
        "case_id": "C-01935d1e7a4b",
        "attempts": 1,
    }


class NotificationFailed(Event):
    """An alert exhausted its retries (or was refused for good); it stays in the delivery log as failed."""

    event_type: ClassVar[str] = "notify.failed"
    subject_prefix: ClassVar[str] = subjects.NOTIFY.format(event="failed")
    example_fields: ClassVar[dict[str, object]] = {
        "notification_id": "overdue:C-01935d1e7a4b:0:CD-SAN-duty:wecom",
        "kind": "overdue",
        "level": 0,
        "channel": "wecom",
        "recipient": "CD-SAN-duty",
        "unit_id": "CD-SAN",
        "case_id": "C-01935d1e7a4b",
        "attempts": 6,
        "error": "DeliveryError: HTTP 503 from qyapi.weixin.qq.com",
        "permanent": False,
    }

    notification_id: str = Field(description="Stable: one per case, kind, level, recipient and channel")
    kind: str = Field(description="new_case, deadline_warning, overdue, escalation ...")
    level: int = Field(default=0, ge=0, description="Escalation level (or dispatch round − 1)")
    channel: str = Field(description="The channel's name in alerts.yaml")
    recipient: str = Field(description="Recipient id (never a phone number or address in clear)")
    unit_id: str | None = None
    case_id: str | None = None
    attempts: int = Field(ge=1)
    error: str = Field(description="The last error, URLs cut to their host and secrets removed")
    permanent: bool = Field(default=False, description="Refused for good (no retry would help)")
