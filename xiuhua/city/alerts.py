"""Alert rules (告警规则): which event reaches which people of which unit, on which channels, and how hard to try."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AlertKind = Literal[
    "new_case",
    "deadline_warning",
    "overdue",
    "escalation",
    "sensor_emergency",
    "bottom_ranking",
    "merchant_escalation",
    "merchant_notice",
    "delivery_failed",
]
# `merchant`: the merchant a 门前三包 case is about, on the channels merchants.yaml gives it (duties do not apply).
Relation = Literal["lead_unit", "cooperating_units", "command_centre", "street_office", "merchant"]
ChannelType = Literal["file", "webhook", "wecom", "dingtalk", "feishu", "email", "sms"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")


class AlertRule(BaseModel):
    """One rule: an alert kind to the contacts with a duty of the units in a relation to the case."""

    model_config = ConfigDict(extra="forbid")

    kind: AlertKind
    to: list[Relation] = ["lead_unit"]
    duties: list[str] = Field(default_factory=lambda: ["duty"], description="Which contacts of those units")
    channels: list[str] = Field(default_factory=lambda: ["file"])
    urgent: bool = Field(default=False, description="Urgent alerts ignore quiet hours")
    min_level: int = Field(default=0, ge=0, description="Escalation level (dispatch round − 1) from which it applies")
    max_level: int | None = Field(default=None, ge=0, description="… up to which it applies (None: no upper bound)")


class ChannelConfig(BaseModel):
    """How one named channel talks to its receivers. Secrets come from the environment (`*_env`)."""

    model_config = ConfigDict(extra="forbid")

    type: ChannelType
    secret_env: str | None = Field(default=None, description="Env var with the signing secret (webhook, robots)")
    secret: str | None = Field(default=None, description="Inline secret: tests and demos only; prefer secret_env")
    timeout_s: float = Field(default=10.0, gt=0)
    quiet_hours: bool | None = Field(
        default=None, description="Whether quiet hours hold back non-urgent alerts (default: every type but file)"
    )
    msg_format: Literal["markdown", "text"] = Field(default="markdown", description="Robots: markdown or text")
    # e-mail (SMTP)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_user_env: str | None = None
    smtp_password_env: str | None = None
    mail_from: str = "xiuhua@localhost"
    # SMS gateway over HTTP
    gateway_url: str | None = Field(default=None, description="SMS gateway endpoint; POST JSON")
    gateway_token_env: str | None = Field(default=None, description="Env var with the gateway's bearer token")
    sms_template: str = Field(
        default="【绣花】{title} 案件{case_id}，请及时处置。",
        description="Python format string over the message fields (title, case_id, unit, due_at, level ...)",
    )
    sms_digest_template: str = Field(
        default="【绣花】{title}：{summary}。最紧急：{top}",
        description="The SMS text of a digest (fields title, summary: counts by kind, top: the most urgent case)",
    )
    sign_name: str = Field(default="绣花城管", description="SMS signature (签名) the gateway expects")


class RetryPolicy(BaseModel):
    """Exponential back-off with jitter: delay = min(max_s, base_s·2^(n−1)), then a random share of it."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=6, ge=1)
    base_s: float = Field(default=2.0, gt=0)
    max_s: float = Field(default=600.0, gt=0)
    jitter: float = Field(default=0.5, ge=0, le=1, description="Share of the delay drawn at random (0 = none)")


class RateLimit(BaseModel):
    """A token bucket per recipient (contact) and channel, shared by every notify instance through the store;
    urgent alerts have a bucket of the same size of their own. What is over it waits for one digest."""

    model_config = ConfigDict(extra="forbid")

    capacity: int = Field(default=10, ge=1, description="Burst: messages a recipient may get at once")
    per_minute: float = Field(default=6.0, gt=0, description="Refill rate, tokens per minute")


class AlertsFile(BaseModel):
    """alerts.yaml"""

    model_config = ConfigDict(extra="forbid")

    quiet_hours: str | None = Field(default="22:00-07:30", description="Non-urgent alerts wait, city time")
    poll_seconds: float = Field(default=0.2, gt=0, description="How often the worker looks for due deliveries")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    channels: dict[str, ChannelConfig] = Field(
        default_factory=dict, description="Named channels; a contact's address is keyed by the same name"
    )
    rules: list[AlertRule] = Field(min_length=1)

    @field_validator("quiet_hours")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        if v is not None and not _HHMM.match(v):
            raise ValueError("quiet_hours must look like 22:00-07:30")
        return v

    @model_validator(mode="after")
    def _channels_known(self) -> AlertsFile:
        for rule in self.rules:
            for name in rule.channels:
                if name not in self.channels and name not in ChannelType.__args__:  # type: ignore[attr-defined]
                    raise ValueError(f"rule {rule.kind} names channel {name!r}, not configured under channels")
        return self

    def respects_quiet_hours(self, name: str) -> bool:
        """Quiet hours protect people; the file outbox (an audit record) wakes nobody."""
        if name not in self.channels and name not in ChannelType.__args__:  # type: ignore[attr-defined]
            return True  # a channel since removed from the city's data: its delivery fails, quietly
        cfg = self.channel(name)
        return cfg.quiet_hours if cfg.quiet_hours is not None else cfg.type != "file"

    def channel(self, name: str) -> ChannelConfig:
        """A channel's configuration (a bare type name with defaults when not configured)."""
        if name in self.channels:
            return self.channels[name]
        return ChannelConfig(type=name)  # type: ignore[arg-type]
