"""Sensor readings (物联感知): debounced against their device's thresholds (`services.intake.sensors`); a transition
opens or clears a case, and only a transition is written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from contracts.reports import RejectionReason, SensorNormal, SensorReading
from contracts.values import Place
from services.intake.cases import device_place, place_point, sensor_draft
from services.intake.outcomes import Outcomes
from services.intake.reports import reporter_of
from services.intake.sensors import Decision, DeviceState, known_values, step
from services.intake.store import BatchIO
from xiuhua.consumer import Batch, Item, count


class SensorReadings:
    """Applies sensor readings, one batch at a time (the devices' states read in bulk by the batch)."""

    def __init__(self, outcomes: Outcomes) -> None:
        self.rt = outcomes.rt
        self.outcomes = outcomes
        self._points: dict[tuple[float, float, str], Place | RejectionReason] = {}
        self.sensor_changes = self.rt.metrics.counter(
            "xiuhua_sensor_transitions", "Sensor state transitions", ("device_type", "to")
        )

    async def prefetch(self, io: BatchIO, readings: list[SensorReading]) -> None:
        """The batch's device states, and the cases they hold open: two queries."""
        await io.prefetch_devices(r.device_id for r in readings)
        await io.prefetch_cases(
            c for d in io.devices.values() if d is not None for c in (d.case_id, d.fault_case_id) if c
        )

    async def handle(
        self, io: BatchIO, batch: Batch, item: Item, raw: Callable[[], dict[str, Any]], reading: SensorReading
    ) -> None:
        """Debounce a reading against its device's thresholds; write only on a transition. `raw` makes the raw
        report's document, for a reading that is kept (refused, or a transition)."""
        rt = self.rt
        placed = self.point_of(reading)
        if isinstance(placed, RejectionReason):
            self.outcomes.reject(io, batch, item, raw(), "sensor", reading.source_ref(), [placed])
            return
        cfg = rt.city.intake.sensors.get(reading.device_type)
        if cfg is None:
            batch.no_effect(item)
            return  # a device type the city sets no thresholds for: telemetry only
        devices = rt.city.devices
        model = devices.model_of(reading.device_id) or devices.models.get(reading.model or "")
        values = known_values(cfg, reading.device_type, dict(reading.values), model.aliases if model else {})
        if isinstance(values, RejectionReason):
            self.outcomes.reject(io, batch, item, raw(), "sensor", reading.source_ref(), [values])
            return
        state = await io.device(reading.device_id) or DeviceState(reading.device_id, reading.device_type)
        alarm_open = bool(state.case_id and await io.is_open(state.case_id))
        fault_open = bool(state.fault_case_id and await io.is_open(state.fault_case_id))
        decision = step(state, cfg, values, reading.measured_at, alarm_open=alarm_open, fault_open=fault_open)
        if decision.state is None:
            batch.no_effect(item)  # a copy of it would be judged against this state or a later one: no-op again
            return  # nothing changed: no write at all
        new, raw_doc = decision.state, raw()
        place: Place | None = None
        if decision.open is not None or decision.cleared_case_id:
            place = placed or device_place(reading, rt.city)
        if decision.open is not None:
            assert place is not None
            case_id = await self._open(io, batch, item, raw_doc, reading, decision, place)
            new = replace(new, fault_case_id=case_id) if decision.open == "fault" else replace(new, case_id=case_id)
        if decision.cleared_case_id:
            assert place is not None
            self._cleared(io, batch, item, raw_doc, reading, decision.cleared_case_id, place, values)
        io.put_device(new)
        count(self.sensor_changes.labels(reading.device_type, decision.open or new.status))

    async def _open(
        self,
        io: BatchIO,
        batch: Batch,
        item: Item,
        raw_doc: dict[str, Any],
        reading: SensorReading,
        decision: Decision,
        place: Place,
    ) -> str:
        """A breach or a fault opens a case (or joins a near open one); returns its id."""
        rt, ref = self.rt, reading.source_ref()
        assert decision.category is not None and decision.open is not None
        what = "设备故障 device fault" if decision.open == "fault" else "超过阈值 threshold exceeded"
        words = (
            f"{reading.device_type} {reading.device_id}{' @' + reading.site_id if reading.site_id else ''}: "
            f"{what}: {decision.reason}"
        )
        draft = sensor_draft(rt.city, decision.category, place, words, decision.urgent)
        correlation = f"sensor:{ref}:{decision.open}"
        return await self.outcomes.open_or_merge(
            io,
            batch,
            item,
            {**raw_doc, "trigger": decision.open, "reason": decision.reason},
            draft,
            source="sensor",
            ref=ref,
            correlation=correlation,
            reported_at=reading.measured_at,
            reporter=reporter_of(reading, rt.settings.pseudonym_key),
            report=reading,
        )

    def _cleared(
        self,
        io: BatchIO,
        batch: Batch,
        item: Item,
        raw_doc: dict[str, Any],
        reading: SensorReading,
        case_id: str,
        place: Place,
        values: dict[str, Any],
    ) -> None:
        """The cause has gone: kept as telemetry, and `SensorNormal` tells dispatch the case may be verified."""
        io.add_raw({**raw_doc, "status": "sensor_normal", "case_id": case_id})
        batch.emit(
            item,
            SensorNormal(
                correlation_id=f"sensor:{reading.device_id}",
                device_id=reading.device_id,
                device_type=reading.device_type,
                case_id=case_id,
                street_code=place.street_code,
                site_id=reading.site_id,
                measured_at=reading.measured_at,
                values=values,
            ),
        )

    def point_of(self, reading: SensorReading) -> Place | RejectionReason | None:
        """The places of the points readings carry, remembered: a device reports from the same point every time."""
        loc = reading.location
        if loc is None or not loc.given:
            return None
        key = (loc.lng, loc.lat, loc.coord_system)
        found = self._points.get(key)
        if found is None:
            if len(self._points) >= 50_000:
                self._points.clear()
            found = self._points[key] = place_point(loc, self.rt.city)
        return found
