"""Subject names (docs/integrating/contracts.md). Versioned; what consumers filter on sits in tokens."""

from __future__ import annotations

import re

REPORT_IN = "report.v1.in.{source}"
REPORT_IN_ALL = "report.v1.in.>"
REPORT_REJECTED = "report.v1.rejected"
CASE = "case.v1.{event}.{street_code}"
CASE_ALL = "case.v1.>"
COMMAND = "cmd.v1.case.{action}"
COMMAND_ALL = "cmd.v1.case.*"
SCORE = "score.v1.{event}"
SCORE_ALL = "score.v1.>"
NOTIFY = "notify.v1.{event}"
NOTIFY_ALL = "notify.v1.>"
BULLETIN_PUBLISHED = "bulletin.v1.published"
DLQ = "dlq.v1.{service}"
DLQ_ALL = "dlq.v1.>"

REPORT_SOURCES = ("grid", "hotline", "sensor", "inspection", "merchant_check")
UNKNOWN_STREET = "unknown"

_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_-]")


def token(value: str | None) -> str:
    """Make a value safe as one subject token (no dots, spaces or wildcards)."""
    if not value:
        return UNKNOWN_STREET
    return _TOKEN_BAD.sub("_", value)


def case_subject(event: str, street_code: str | None, version: int = 1) -> str:
    """`case.v<version>.<event>.<street_code>` (v1 unless a breaking change published a newer version)."""
    return f"case.v{version}.{event}.{token(street_code)}"


def report_subject(source: str) -> str:
    """`report.v1.in.<source>`."""
    return REPORT_IN.format(source=source)


def dlq_subject(service: str) -> str:
    """`dlq.v1.<service>`."""
    return DLQ.format(service=service)
