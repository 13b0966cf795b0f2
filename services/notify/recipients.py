"""Who must hear what: alert rules applied to a case event. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.values import UnitRef
from xiuhua.city import City


@dataclass(frozen=True)
class Delivery:
    """One message to one contact on one channel."""

    notification_id: str
    kind: str
    unit_id: str
    contact_id: str
    channel: str
    address: str
    urgent: bool


def deliveries_for(
    city: City, kind: str, *, case_id: str, level: int, lead: UnitRef, cooperating: list[UnitRef]
) -> list[Delivery]:
    """Every (contact, channel) an alert of `kind` about a case reaches; ids are stable for de-duplication."""
    out: dict[str, Delivery] = {}
    for rule in city.alerts.rules:
        if rule.kind != kind or level < rule.min_level:
            continue
        units: list[str] = []
        for rel in rule.to:
            if rel == "lead_unit":
                units.append(lead.unit_id)
            elif rel == "cooperating_units":
                units.extend(u.unit_id for u in cooperating)
            elif rel == "command_centre":
                units.extend(u.id for u in city.units_with_role("command_centre"))
        for unit_id in units:
            unit = city.units.get(unit_id)
            if unit is None:
                continue
            for contact in unit.contacts:
                if contact.duty not in rule.duties:
                    continue
                for channel in rule.channels:
                    address = contact.channels.get(channel)
                    if address is None:
                        continue
                    nid = f"{kind}:{case_id}:{level}:{contact.id}:{channel}"
                    out.setdefault(nid, Delivery(nid, kind, unit_id, contact.id, channel, address, rule.urgent))
    return list(out.values())
