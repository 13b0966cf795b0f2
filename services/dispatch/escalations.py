"""Merchants escalated by scoring (门前三包 repeated failures) become enforcement cases. No I/O."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from contracts.cases import CaseOpened
from contracts.merchants import MerchantEscalated
from contracts.values import Place, ReportSource
from xiuhua.city import City


def merchant_case(ev: MerchantEscalated, city: City, now: datetime) -> CaseOpened:
    """The enforcement case of an escalated merchant; its id is stable per merchant and period."""
    merchant = city.merchants.get(ev.merchant_id)
    place = _merchant_place(ev, merchant, city)
    category = city.category(city.routing.merchant_category)
    ref = f"{ev.merchant_id}:{ev.period}"
    name = ev.merchant_name or (merchant.name if merchant else ev.merchant_id)
    return CaseOpened(
        occurred_at=now,
        correlation_id=ev.correlation_id or f"merchant:{ref}",
        case_id="M-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{ev.merchant_id}-{ev.period}"),
        street_code=place.street_code or ev.street_code,
        source=ReportSource.merchant_check,
        source_ref=ref,
        category_code=city.routing.merchant_category,
        category_name=category.name_zh if category else "",
        description=f"{name} 门前责任区多次检查不合格 ({ev.violations} 次, {ev.period}): {ev.reason}".strip(),
        place=place,
        reported_at=ev.occurred_at,
        merchant_id=ev.merchant_id,
    )


def _merchant_place(ev: MerchantEscalated, merchant: Any, city: City) -> Place:
    areas = city.areas
    if merchant is not None and merchant.lng is not None and merchant.lat is not None:
        found = areas.place_of_point(merchant.lng, merchant.lat, merchant.address)
        if found is not None:
            return found
    for code in (merchant.area if merchant else None, ev.community_code, ev.street_code):
        if code and code in areas.by_code:
            return areas.place_of_area(code, address=merchant.address if merchant else None)
    return Place(street_code=ev.street_code, community_code=ev.community_code)
