"""JetStream stream definitions: provisioned once by `xiuhua up` (or `xiuhua streams`), referenced elsewhere."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

DAY = 24 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    """What a stream holds and for how long."""

    name: str
    subjects: tuple[str, ...]
    description: str
    max_age_s: float
    duplicate_window_s: float = 120.0
    extra: dict[str, object] = field(default_factory=dict)
    # (stream, subject) pairs this stream copies from others: an archive keeps a subject longer than its origin.
    sources: tuple[tuple[str, str], ...] = ()


REPORTS = StreamSpec(
    "XH_REPORTS",
    ("report.v1.>",),
    "Raw inbound reports from every source and their rejections",
    max_age_s=90 * DAY,
)
CASES = StreamSpec(
    "XH_CASES",
    ("case.v1.>",),
    "Case lifecycle events: the history scores are folded from",
    max_age_s=800 * DAY,
)
CHECKS = StreamSpec(
    "XH_CHECKS",
    (),
    "Archive of merchant duty checks (门前三包 检查) copied from XH_REPORTS: merchant scores rebuild from it long "
    "after XH_REPORTS, which also holds sensor telemetry, has dropped them",
    max_age_s=800 * DAY,
    sources=(("XH_REPORTS", "report.v1.in.merchant_check"),),
)
COMMANDS = StreamSpec("XH_COMMANDS", ("cmd.v1.>",), "Unit and command-centre commands", max_age_s=90 * DAY)
SCORES = StreamSpec("XH_SCORES", ("score.v1.>",), "Assessment results", max_age_s=800 * DAY)
NOTIFY = StreamSpec(
    "XH_NOTIFY", ("notify.v1.>", "bulletin.v1.>"), "Deliveries, failures, bulletins", max_age_s=400 * DAY
)
DLQ = StreamSpec("XH_DLQ", ("dlq.v1.>",), "Dead letters with the error, for inspection and re-drive", 365 * DAY)

ALL: tuple[StreamSpec, ...] = (REPORTS, CHECKS, CASES, COMMANDS, SCORES, NOTIFY, DLQ)


def any_version(text: str) -> str:
    """`case.v2.opened.CD` → `case.v*.opened.CD`: the subject family, whatever its version (a later version
    lives in the stream of its family)."""
    return re.sub(r"(^|\.)v\d+(?=\.|$)", r"\1v*", text, count=1)


@functools.lru_cache(maxsize=4096)
def stream_for(subject: str) -> StreamSpec:
    """The stream that captures a subject (of any subject version of its family). Asked for every event published
    (two regular expressions per pattern tried); the streams are fixed, so each subject's answer is remembered."""
    for spec in ALL:
        for pattern in spec.subjects:
            prefix = pattern.removesuffix(">")
            if subject.startswith(prefix) or any_version(subject).startswith(any_version(prefix)):
                return spec
    raise KeyError(f"no stream captures subject {subject!r}")
