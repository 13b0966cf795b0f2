"""Sensor readings are telemetry, not cases: per-device debounce of thresholds, and device faults. Pure.

Each device has one small state: `normal`, `breach` (over a threshold since `since`, not yet for long enough)
or `alarm` (a case is open for it). A reading changes the state only on a transition, so the store is written
on transitions, never per reading. A reading older than the last transition is ignored (late or replayed), which
also makes a redelivered reading harmless. Impossible values (below the measurable minimum, NaN, not a number)
and saturated ones (at or above full scale: a sensor stuck at its maximum) or a fault status open a
device-fault case instead and leave the pollution state alone.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from contracts.reports import RejectionReason
from xiuhua.city.intake import DeviceType, SensorRule, parse_duration

Status = Literal["normal", "breach", "alarm"]


@dataclass(frozen=True)
class DeviceState:
    """What intake remembers about one device (one document, `_id` = device id)."""

    device_id: str
    device_type: str
    status: Status = "normal"
    since: datetime | None = None  # start of the current breach
    changed_at: datetime | None = None  # measured_at of the last transition
    metric: str | None = None  # the metric in breach
    case_id: str | None = None  # the alarm case (kept after the return to normal, to avoid a second case)
    fault_case_id: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """The state as a store document."""
        return {
            "_id": self.device_id,
            "device_type": self.device_type,
            "status": self.status,
            "since": self.since,
            "changed_at": self.changed_at,
            "metric": self.metric,
            "case_id": self.case_id,
            "fault_case_id": self.fault_case_id,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DeviceState:
        """A state read back from the store."""
        return cls(
            doc["_id"],
            doc["device_type"],
            doc.get("status", "normal"),
            doc.get("since"),
            doc.get("changed_at"),
            doc.get("metric"),
            doc.get("case_id"),
            doc.get("fault_case_id"),
        )


@dataclass(frozen=True)
class Decision:
    """What a reading does: a new state to store (None: unchanged) and what to publish."""

    state: DeviceState | None = None
    open: Literal["alarm", "fault"] | None = None
    category: str | None = None
    urgent: bool = False
    reason: str = ""
    cleared_case_id: str | None = None  # back to normal: publish report.v1.sensor_normal for this case


# What most readings decide (frozen, so one instance serves them all: a frozen dataclass is slow to make).
UNCHANGED = Decision()


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float:  # the common case first: a reading's values are floats
        return value
    if kind is bool or not isinstance(value, int | float):
        return None
    return float(value)


def known_values(
    cfg: DeviceType, device_type: str, values: dict[str, Any], aliases: dict[str, str]
) -> dict[str, Any] | RejectionReason:
    """The reading's values under the city's metric names (through the device model's aliases), or why not: a
    name the device type's profile does not know is refused with every unknown name, never ignored."""
    if not values:
        return RejectionReason(code="no_metric", field="values", message="the reading carries no value at all")
    named = {aliases.get(k, k): v for k, v in values.items()}
    known = cfg.known_metrics
    unknown = [k for k in values if aliases.get(k, k) not in known]
    if unknown:
        return RejectionReason(
            code="unknown_metric",
            field=f"values.{unknown[0][:64]}",
            message=f"{device_type} readings do not have {', '.join(sorted(u[:64] for u in unknown))} (known: "
            f"{', '.join(sorted(known))}); a model's aliases in devices.yaml map its own names",
        )
    return named


def fault_of(cfg: DeviceType, values: dict[str, Any]) -> str | None:
    """Why the reading shows a faulty device, or None."""
    status = values.get("status")
    if isinstance(status, str) and status in cfg.fault_statuses:
        return f"device status {status}"
    for metric, (lo, hi) in cfg.ranges.items():
        if metric not in values or values[metric] is None:
            continue
        v = _number(values[metric])
        if v is None:
            return f"{metric} is not a number: {str(values[metric])[:40]!r}"
        if math.isnan(v) or v < lo:
            return f"{metric}={v:g} is impossible (below {lo:g})"
        if v >= hi:
            return f"{metric}={v:g} is saturated (full scale {hi:g})"
    return None


def breached(rule: SensorRule, values: dict[str, Any]) -> bool:
    """Whether a reading is beyond one rule's threshold."""
    if rule.metric not in values or values[rule.metric] is None:
        return False
    v = values[rule.metric]
    if rule.op == "in":
        allowed = rule.value if isinstance(rule.value, list) else [rule.value]
        return str(v) in {str(a) for a in allowed}
    if rule.op == "eq" and isinstance(rule.value, str):
        return str(v) == rule.value
    x, limit = _number(v), _number(rule.value)
    if x is None or limit is None or math.isnan(x):
        return False
    return _COMPARE[rule.op](x, limit)


# One comparison per reading, not a table of all five built for each.
_COMPARE = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le, "eq": operator.eq}


def describe(rule: SensorRule, values: dict[str, Any]) -> str:
    """One line for the case description."""
    return f"{rule.metric}={values.get(rule.metric)} {rule.op} {rule.value} for {rule.sustain}"


def step(
    state: DeviceState,
    cfg: DeviceType,
    values: dict[str, Any],
    at: datetime,
    *,
    alarm_open: bool,
    fault_open: bool,
) -> Decision:
    """The effect of one reading measured at `at` on a device's state.

    `alarm_open` / `fault_open`: whether the state's alarm / fault case is still open (intake's projection).
    """
    if state.changed_at is not None and at < state.changed_at:
        return UNCHANGED  # older than the last transition: late or replayed
    fault = fault_of(cfg, values)
    if fault is not None:
        if state.fault_case_id and fault_open:
            return UNCHANGED
        return Decision(state=replace(state, changed_at=at), open="fault", category=cfg.fault_category, reason=fault)
    rule = next((r for r in cfg.rules if breached(r, values)), None)
    if rule is None:
        if state.status == "breach":
            return Decision(state=replace(state, status="normal", since=None, metric=None, changed_at=at))
        if state.status == "alarm":
            return Decision(
                state=replace(state, status="normal", since=None, metric=None, changed_at=at),
                cleared_case_id=state.case_id,
                reason="back to normal",
            )
        return UNCHANGED
    sustain = parse_duration(rule.sustain)
    if state.status == "alarm":
        if alarm_open:
            return UNCHANGED
        # The case was closed while the device still reads high: a fresh breach starts now.
        state = replace(state, status="normal", case_id=None)
    if state.status == "normal":
        if state.case_id and alarm_open:
            # Back over the threshold while its earlier case is still open: no second case.
            return Decision(state=replace(state, status="alarm", since=at, metric=rule.metric, changed_at=at))
        breach = replace(state, status="breach", since=at, metric=rule.metric, changed_at=at, case_id=None)
        if sustain.total_seconds() <= 0:
            return Decision(
                state=replace(breach, status="alarm"),
                open="alarm",
                category=rule.category or cfg.category,
                urgent=rule.urgent,
                reason=describe(rule, values),
            )
        return Decision(state=breach)
    # breach: has it lasted long enough?
    assert state.since is not None
    if at - state.since >= sustain:
        return Decision(
            state=replace(state, status="alarm", changed_at=at),
            open="alarm",
            category=rule.category or cfg.category,
            urgent=rule.urgent,
            reason=describe(rule, values),
        )
    return UNCHANGED
