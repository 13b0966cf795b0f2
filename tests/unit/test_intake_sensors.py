"""Sensor debounce with an injected clock: sustained breaches open one case, faults open a device-fault case,
the return to normal is reported, and nothing is written between transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.intake.sensors import DeviceState, fault_of, step
from xiuhua.clock import FrozenClock

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _run(cfg, readings, clock: FrozenClock, state: DeviceState, *, alarm_open=True, fault_open=True):
    """Feed readings one per minute; returns (decisions, final state, writes)."""
    decisions, writes = [], 0
    for values in readings:
        d = step(
            state,
            cfg,
            values,
            clock.now(),
            alarm_open=alarm_open and bool(state.case_id),
            fault_open=fault_open and bool(state.fault_case_id),
        )
        if d.state is not None:
            writes += 1
            state = d.state
            if d.open == "alarm":
                state = DeviceState(**{**state.__dict__, "case_id": f"C-{writes}"})
            if d.open == "fault":
                state = DeviceState(**{**state.__dict__, "fault_case_id": f"F-{writes}"})
        decisions.append(d)
        clock.advance(timedelta(minutes=1))
    return decisions, state, writes


def test_dust_opens_one_case_only_after_thirty_minutes_over_the_limit(city) -> None:
    cfg = city.intake.sensors["dust"]
    clock = FrozenClock(T0)
    state = DeviceState("D-1", "dust")
    decisions, state, writes = _run(cfg, [{"pm10": 180.0}] * 29, clock, state)
    assert not any(d.open for d in decisions) and state.status == "breach" and writes == 1
    decisions, state, writes = _run(cfg, [{"pm10": 190.0}] * 60, clock, state)
    opened = [d for d in decisions if d.open]
    assert len(opened) == 1 and opened[0].category == "0701" and state.status == "alarm"
    assert writes == 1  # the hour of high readings wrote once: the transition to alarm
    decisions, state, writes = _run(cfg, [{"pm10": 60.0}], clock, state)
    assert decisions[0].cleared_case_id == "C-1" and state.status == "normal" and writes == 1


def test_a_short_spike_never_opens_a_case(city) -> None:
    cfg = city.intake.sensors["dust"]
    clock = FrozenClock(T0)
    readings = ([{"pm10": 300.0}] * 20 + [{"pm10": 50.0}]) * 5
    decisions, state, writes = _run(cfg, readings, clock, DeviceState("D-2", "dust"))
    assert not any(d.open for d in decisions) and state.status == "normal" and writes == 10


def test_no_second_case_while_the_first_is_open_and_a_new_one_after_it_closed(city) -> None:
    cfg = city.intake.sensors["manhole_tilt"]
    clock = FrozenClock(T0)
    decisions, state, _ = _run(cfg, [{"tilt_deg": 30.0}], clock, DeviceState("M-1", "manhole_tilt"))
    assert decisions[0].open == "alarm" and decisions[0].urgent  # immediately, urgent
    decisions, state, _ = _run(cfg, [{"tilt_deg": 2.0}, {"tilt_deg": 25.0}, {"tilt_deg": 28.0}], clock, state)
    assert decisions[0].cleared_case_id and not any(d.open for d in decisions)  # case still open: no second
    decisions, state, _ = _run(cfg, [{"tilt_deg": 40.0}], clock, state, alarm_open=False)
    assert decisions[0].open == "alarm"  # the first case was closed: a new one


def test_bins_need_two_hours_at_ninety_percent(city) -> None:
    cfg = city.intake.sensors["bin_fill"]
    clock = FrozenClock(T0)
    decisions, state, _ = _run(cfg, [{"fill_pct": 95}] * 120, clock, DeviceState("B-1", "bin_fill"))
    assert not any(d.open for d in decisions)
    decisions, state, _ = _run(cfg, [{"fill_pct": 96}], clock, state)
    assert decisions[0].open == "alarm" and decisions[0].category == "0201"


def test_impossible_or_saturated_values_are_a_device_fault_once(city) -> None:
    cfg = city.intake.sensors["dust"]
    assert "impossible" in fault_of(cfg, {"pm10": -5.0})
    assert "saturated" in fault_of(cfg, {"pm10": 1000.0})
    assert "not a number" in fault_of(cfg, {"pm10": "abc"})
    assert fault_of(cfg, {"pm10": float("nan")}) is not None
    assert fault_of(cfg, {"pm10": 80.0}) is None and fault_of(cfg, {"pm10": None}) is None
    assert fault_of(city.intake.sensors["street_lamp"], {"status": "offline"}) == "device status offline"
    clock = FrozenClock(T0)
    decisions, state, _ = _run(cfg, [{"pm10": 1000.0}] * 45, clock, DeviceState("D-3", "dust"))
    faults = [d for d in decisions if d.open]
    assert len(faults) == 1 and faults[0].open == "fault" and faults[0].category == "1301"
    assert state.status == "normal"  # a stuck sensor says nothing about pollution


def test_late_or_replayed_readings_change_nothing(city) -> None:
    cfg = city.intake.sensors["manhole_tilt"]
    first = step(DeviceState("M-2", "manhole_tilt"), cfg, {"tilt_deg": 20.0}, T0, alarm_open=False, fault_open=False)
    assert first.open == "alarm" and first.state is not None
    state = DeviceState(**{**first.state.__dict__, "case_id": "C-9"})
    late = step(state, cfg, {"tilt_deg": 1.0}, T0 - timedelta(minutes=5), alarm_open=True, fault_open=False)
    assert late.state is None and late.open is None
    again = step(state, cfg, {"tilt_deg": 20.0}, T0, alarm_open=True, fault_open=False)
    assert again.state is None and again.open is None


def test_state_round_trips_through_its_document() -> None:
    s = DeviceState("X", "dust", "breach", T0, T0, "pm10", None, "F-1")
    assert DeviceState.from_doc(s.to_doc()) == s


def test_each_threshold_comparison_at_its_exact_boundary() -> None:
    """At the threshold itself `gt`/`lt` are not breached and `ge`/`le`/`eq` are; a hair either side decides the
    other way round where it should."""
    from services.intake.sensors import breached
    from xiuhua.city.intake import SensorRule

    expected = {  # op: (just below, at, just above)
        "gt": (False, False, True),
        "ge": (False, True, True),
        "lt": (True, False, False),
        "le": (True, True, False),
        "eq": (False, True, False),
    }
    for op, (below, at, above) in expected.items():
        rule = SensorRule(metric="pm10", op=op, value=150)
        got = tuple(breached(rule, {"pm10": v}) for v in (149.9, 150, 150.1))
        assert got == (below, at, above), op
        assert not breached(rule, {"pm10": float("nan")}), op
        assert not breached(rule, {"pm10": None}), op
        assert not breached(rule, {"pm25": 150}), op


def test_state_and_text_thresholds_compare_as_text() -> None:
    from services.intake.sensors import breached
    from xiuhua.city.intake import SensorRule

    tilted = SensorRule(metric="status", op="in", value=["tilted", "open"])
    assert breached(tilted, {"status": "open"}) and not breached(tilted, {"status": "closed"})
    lamp = SensorRule(metric="state", op="eq", value="off")
    assert breached(lamp, {"state": "off"}) and not breached(lamp, {"state": "on"})
