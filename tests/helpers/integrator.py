"""Events as an integrator's system receives them."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.cases import CaseDispatched
from contracts.values import UnitRef, UnitRole


def dispatched(case_id: str, lead: str, cooperating: tuple[str, ...] = (), street: str = "CD") -> CaseDispatched:
    return CaseDispatched(
        case_id=case_id,
        street_code=street,
        category_code="0201",
        rule_id="r",
        lead_unit=UnitRef(unit_id=lead, name=lead, role=UnitRole.sanitation),
        cooperating_units=[UnitRef(unit_id=u, name=u, role=UnitRole.community) for u in cooperating],
        due_at=datetime.now(UTC),
        time_limit="4h",
    )
