"""Count what survived a scenario from the streams and the stores, never from what a bystander overheard.

Every case event in `XH_CASES` is counted per kind (`case.v1.<kind>.*`) and de-duplicated on what makes it one
real-world event (the report for `opened`; the case and round, level or command otherwise), so new lifecycle
events are covered as the services grow. The pipeline's stages are checked against what was sent:
report → opened → dispatched → score increment (`unit_periods`) → alert (outbox line, alone or in a digest, +
`notify.v1.delivered`); and the weekly bulletin's projection (`bulletin_weeks`) counts each opening and each
dispatch once.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nats

from contracts import streams
from services.notify.bulletin.projection import WEEKS as BULLETIN_WEEKS
from xiuhua.bus import connect_options
from xiuhua.settings import Settings
from xiuhua.store import Store
from xiuhua_tools.chaos.bus_read import stream_messages

# The weekly bulletin's week counters (notify's `WEEKS` documents) checked here.
BULLETIN_COUNTS = ("opened", "dispatched")

# Fields that tell two events of one kind apart when they are both real (a second dispatch after a return...).
IDENTITY_FIELDS = ("case_id", "dispatch_round", "round", "level", "command_id", "notification_id", "attempt")


@dataclass
class Tally:
    """What the streams and stores hold after a scenario, against what was sent."""

    sent: int = 0
    rejected: int = 0
    merged: int = 0  # reports that joined an open case (duplicates of the same problem) or were transferred
    cases: int = 0
    dispatched: int = 0
    score_increments: int = 0
    bulletin: dict[str, int] = field(default_factory=dict)  # openings and dispatches the bulletin's weeks count
    alerts: int = 0
    dead_letters: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)  # distinct events per case-event kind
    dead_letter_errors: dict[str, int] = field(default_factory=dict)  # "service/consumer: error" -> how many
    poison_in_streams: int = 0

    def as_dict(self) -> dict[str, Any]:
        """For --json."""
        return asdict(self)

    @property
    def settled(self) -> bool:
        """Every stage caught up with what was sent (duplicates may still show up later)."""
        return self.lost == 0


# Case events a report causes directly (one per report, whatever the case): keyed on the report.
REPORT_KINDS = ("opened", "merged", "transferred")


def report_of(body: dict[str, Any]) -> str:
    """The report (`source:source_ref`, intake's correlation id) a report-caused case event answers."""
    return f"{body.get('source')}:{body.get('source_ref')}"


def identity(kind: str, body: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a case event one real-world event."""
    if kind in REPORT_KINDS:
        return (kind, report_of(body))
    return (kind, *(body.get(f) for f in IDENTITY_FIELDS if f in body))


async def _stream_bodies(js: Any, stream: str, subject: str | None = None) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    async for msg in stream_messages(js, stream, subject):
        try:
            out.append((msg.subject or "", json.loads(msg.data or b"")))
        except ValueError:
            out.append((msg.subject or "", None))
    return out


def _outbox_lines(var_dir: Path) -> list[dict[str, Any]]:
    lines = []
    for path in sorted((var_dir / "outbox").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                lines.append(json.loads(line))
    return lines


def sent_alerts(lines: Iterable[dict[str, Any]]) -> Counter[str]:
    """How often each alert went out, from the outbox's lines: one alert a line, or a digest's several."""
    return Counter(
        str(nid) for line in lines for nid in (line.get("notification_ids") or [line.get("notification_id")])
    )


async def tally(settings: Settings, sent: Iterable[str]) -> Tally:
    """Count every stage for the reports whose correlation ids are `sent`."""
    sent_ids = set(sent)
    t = Tally(sent=len(sent_ids))
    nc = await nats.connect(settings.nats_url or "", **connect_options(settings))
    try:
        js = nc.jetstream()
        cases = await _stream_bodies(js, streams.CASES.name)
        rejected = await _stream_bodies(js, streams.REPORTS.name, "report.v1.rejected")
        delivered = await _stream_bodies(js, streams.NOTIFY.name, "notify.v1.delivered")
        dead = await _stream_bodies(js, streams.DLQ.name)
    finally:
        await nc.close()

    answered, opened_corr, dispatched_cases = _count_case_events(t, cases, sent_ids)
    rejected_ids = {b.get("correlation_id") for _, b in rejected if isinstance(b, dict)} & sent_ids
    t.rejected = len(rejected_ids)
    t.merged = len(answered - opened_corr)
    t.cases = len(opened_corr)
    t.dispatched = len(dispatched_cases)
    t.dead_letters = len(dead)
    errors = Counter(
        f"{b.get('service')}/{b.get('consumer')}: {str(b.get('error'))[:160]}" for _, b in dead if isinstance(b, dict)
    )
    t.dead_letter_errors = dict(errors.most_common(10))

    by_kind, deliveries, bulletin = await _score_counters_and_deliveries(settings)
    _count_score_increments(t, by_kind)
    _count_bulletin(t, bulletin)

    # Alerts: what the channel really sent (the outbox file) and the delivered events, one per notification.
    sent_lines = sent_alerts(_outbox_lines(settings.var_dir))
    delivered_ids = Counter(b.get("notification_id") for _, b in delivered if isinstance(b, dict))
    t.alerts = len(sent_lines)
    for what, counter in (("alert(s) sent twice", sent_lines), ("duplicate delivered event(s)", delivered_ids)):
        if extra := sum(n - 1 for n in counter.values()):
            t.duplicated += extra
            t.problems.append(f"{extra} {what}")

    # Lost: each stage against the one before it.
    alerted_cases = {d["case_id"] for d in deliveries if d.get("status") == "delivered"}
    lost_alerts = len(dispatched_cases - alerted_cases) + len(set(delivered_ids) ^ set(sent_lines))
    _count_lost(t, len(sent_ids - answered - rejected_ids), lost_alerts)
    return t


def _count_case_events(
    t: Tally, cases: list[tuple[str, Any]], sent_ids: set[str]
) -> tuple[set[str], set[str], set[str]]:
    """Count the distinct case (案件) events of the sent reports into `t`; returns the reports answered, the
    reports that opened a case and the cases dispatched."""
    per_kind: dict[str, Counter[tuple[Any, ...]]] = defaultdict(Counter)
    opened_corr: set[str] = set()
    answered: set[str] = set()  # reports that became a case, joined one or were transferred
    our_cases: set[str] = set()
    dispatched_cases: set[str] = set()
    for subject, body in cases:
        kind = subject.split(".")[2]
        if kind in REPORT_KINDS and isinstance(body, dict) and report_of(body) in sent_ids:
            answered.add(report_of(body))
            our_cases.add(body.get("case_id", ""))
            if kind == "opened":
                opened_corr.add(report_of(body))
    for subject, body in cases:
        if not isinstance(body, dict) or body.get("case_id") not in our_cases:
            t.poison_in_streams += 1  # poison a scenario injected, or anything not caused by what it sent
            continue
        kind = subject.split(".")[2]
        per_kind[kind][identity(kind, body)] += 1
        if kind == "dispatched":
            dispatched_cases.add(body["case_id"])
    t.events = {k: len(v) for k, v in sorted(per_kind.items())}
    for kind, keys in per_kind.items():
        extra = sum(n - 1 for n in keys.values())
        if extra:
            t.duplicated += extra
            t.problems.append(f"{extra} duplicate case.v1.{kind} event(s)")
    return answered, opened_corr, dispatched_cases


async def _score_counters_and_deliveries(
    settings: Settings,
) -> tuple[Counter[str], list[dict[str, Any]], Counter[str]]:
    """The dispatches each period kind of the scoring (考评) store counts, notify's deliveries, and the openings and
    dispatches the bulletin's (工作周报) weeks count."""
    scoring = Store(settings.mongo_url or "", settings.database("scoring"), write_concern="1")
    notify = Store(settings.mongo_url or "", settings.database("notify"), write_concern="1")
    try:
        # One counter per period kind (week, month, quarter, year): each must count every dispatch once.
        by_kind: Counter[str] = Counter()
        async for d in scoring["unit_periods"].find({}, {"dispatched": 1, "kind": 1}):
            by_kind[str(d.get("kind", "week"))] += int(d.get("dispatched", 0))
        deliveries = [d async for d in notify["deliveries"].find({}, {"case_id": 1, "status": 1})]
        bulletin: Counter[str] = Counter()
        async for d in notify[BULLETIN_WEEKS].find({}, {"opened": 1, "dispatched": 1}):
            bulletin.update({k: int(d.get(k, 0)) for k in BULLETIN_COUNTS})
    finally:
        await scoring.close()
        await notify.close()
    return by_kind, deliveries, bulletin


def _count_bulletin(t: Tally, bulletin: Counter[str]) -> None:
    """The bulletin's week counters against the distinct openings and dispatches in `XH_CASES`: each counted once."""
    t.bulletin = {k: bulletin.get(k, 0) for k in BULLETIN_COUNTS}
    for kind in BULLETIN_COUNTS:
        real, counted = t.events.get(kind, 0), t.bulletin[kind]
        if counted < real:
            t.lost += real - counted
            t.problems.append(f"{real - counted} case.v1.{kind} event(s) the bulletin does not count")
        elif counted > real:
            t.duplicated += counted - real
            t.problems.append(f"{counted - real} case.v1.{kind} event(s) the bulletin counts twice")


def _count_score_increments(t: Tally, by_kind: Counter[str]) -> None:
    """Set the score increments (one per dispatched case) in `t`; a period kind counting otherwise is a problem."""
    t.score_increments = by_kind.get("week", max(by_kind.values(), default=0))
    for kind, n in sorted(by_kind.items()):
        if n != t.score_increments:
            t.problems.append(f"unit_periods of kind {kind} count {n} dispatches, the week counts {t.score_increments}")
            t.lost += max(0, t.score_increments - n)
            t.duplicated += max(0, n - t.score_increments)


def _count_lost(t: Tally, lost_cases: int, lost_alerts: int) -> None:
    """Add to `t` what each stage lost against the one before it, and score increments beyond the dispatches."""
    lost_dispatch = max(0, t.cases - t.dispatched)
    lost_scores = max(0, t.dispatched - t.score_increments)
    if t.score_increments > t.dispatched:
        t.duplicated += t.score_increments - t.dispatched
        t.problems.append(f"{t.score_increments - t.dispatched} score increment(s) beyond the dispatches")
    for n, what in (
        (lost_cases, "report(s) without an outcome"),
        (lost_dispatch, "case(s) not dispatched"),
        (lost_scores, "dispatch(es) not scored"),
        (lost_alerts, "alert(s) missing"),
    ):
        if n:
            t.lost += n
            t.problems.append(f"{n} {what}")
