"""Who must hear what: alert rules (city data) applied to an event's facts. Pure."""

from __future__ import annotations

from collections.abc import Iterable
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


def _unit_id(u: UnitRef | str | None) -> str | None:
    return u.unit_id if isinstance(u, UnitRef) else u


def street_offices(city: City, street_code: str | None) -> list[str]:
    """The street office(s) (街道公共管理办) responsible for a street."""
    if not street_code:
        return []
    return [u.id for u in city.units_with_role("street_office") if street_code in u.areas]


def deliveries_for(
    city: City,
    kind: str,
    *,
    case_id: str | None = None,
    level: int = 0,
    lead: UnitRef | str | None = None,
    cooperating: Iterable[UnitRef | str] = (),
    street_code: str | None = None,
    key: str | None = None,
    urgent: bool = False,
    merchant: str | None = None,
) -> list[Delivery]:
    """Every (contact, channel) an alert of `kind` reaches; ids are stable for de-duplication.

    The id is `kind:key:level:contact:channel` where key is the case id (or, for alerts about no case, what the
    alert is about, e.g. a ranking period and unit): one alert per case, kind, level, recipient and channel.
    """
    subject_key = key or case_id or "-"
    out: dict[str, Delivery] = {}
    for rule in city.alerts.rules:
        if rule.kind != kind or level < rule.min_level:
            continue
        if rule.max_level is not None and level > rule.max_level:
            continue
        units: list[str] = []
        for rel in rule.to:
            if rel == "lead_unit":
                lead_id = _unit_id(lead)
                units.extend([lead_id] if lead_id else [])
            elif rel == "cooperating_units":
                units.extend(u for u in (_unit_id(c) for c in cooperating) if u)
            elif rel == "command_centre":
                units.extend(u.id for u in city.units_with_role("command_centre"))
            elif rel == "street_office":
                units.extend(street_offices(city, street_code))
            elif rel == "merchant" and merchant in city.merchants:
                shop = city.merchants[merchant]
                for channel in rule.channels:
                    address = shop.channels.get(channel)
                    if address is not None:
                        nid = f"{kind}:{subject_key}:{level}:{shop.id}:{channel}"
                        out[nid] = Delivery(nid, kind, shop.id, shop.id, channel, address, rule.urgent or urgent)
        for unit_id in dict.fromkeys(units):
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
                    nid = f"{kind}:{subject_key}:{level}:{contact.id}:{channel}"
                    prior = out.get(nid)
                    is_urgent = rule.urgent or urgent or (prior is not None and prior.urgent)
                    out[nid] = Delivery(nid, kind, unit_id, contact.id, channel, address, is_urgent)
    return list(out.values())
