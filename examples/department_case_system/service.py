"""The department case system: its own case register, fed by Xiuhua's case events for one unit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts import cases
from contracts.commands import Acknowledge, Actor, CaseCommand, RequestExtension, Resolve, Return
from contracts.envelope import Event
from xiuhua.client import XiuhuaClient
from xiuhua.security import OPERATOR

log = logging.getLogger("examples.department_case_system")


@dataclass
class LocalCase:
    """A case as the department's own system keeps it (its 工单台账)."""

    case_id: str
    street_code: str | None
    category_code: str
    due_at: datetime
    status: str = "received"  # received → acknowledged → resolved → verified → closed (or rework, returned ...)
    history: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)


class DepartmentCaseSystem:
    """Follows one unit's cases on the bus and answers with commands; `on_acknowledged` is the field crew."""

    def __init__(
        self,
        client: XiuhuaClient,
        unit_id: str,
        *,
        operator: str = "值班员",
        durable: str | None = None,
        streets: list[str] | None = None,
        on_acknowledged: Callable[[LocalCase], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.unit_id = unit_id
        self.operator = operator
        # The connected user's own consumer, the one its permissions let it read; without a user (or as the operator,
        # who may read through any), one per unit.
        own = client.user if client.user not in (None, OPERATOR) else None
        self.durable = durable or own or f"dept-{unit_id}"
        self.streets = streets
        self.on_acknowledged = on_acknowledged
        self.cases: dict[str, LocalCase] = {}
        self._role = "community"
        self._changed = asyncio.Condition()
        self._sub: Any = None

    async def start(self) -> None:
        """Start following the unit's cases (a durable consumer: a restart resumes where it stopped)."""
        self._sub = await self.client.subscribe_unit_cases(
            self.unit_id,
            self._on_event,
            durable=self.durable,
            streets=self.streets,
            include_cooperating=False,
            deliver_policy="all",
        )

    async def stop(self) -> None:
        """Stop following."""
        if self._sub is not None:
            await self._sub.stop()

    # ---- commands the department sends --------------------------------------------------------------------

    def _actor(self) -> Actor:
        return Actor(unit_id=self.unit_id, role=self._role, name=self.operator)

    async def _send(self, command_type: type[CaseCommand], case_id: str, step: str, **fields: Any) -> None:
        # A deterministic command id: sending the same step twice (a retry, a restart) is one command.
        command = command_type(
            command_id=f"{self.unit_id}:{case_id}:{step}",
            case_id=case_id,
            actor=self._actor(),
            at=datetime.now(UTC),
            **fields,
        )
        await self.client.send_command(command)

    async def resolve(self, case_id: str, note: str, photo_urls: list[str] | None = None) -> None:
        """处置反馈: report the problem fixed, with photos."""
        case = self.cases[case_id]
        await self._send(Resolve, case_id, f"resolve:{len(case.history)}", note=note, photo_urls=photo_urls or [])

    async def return_case(self, case_id: str, reason: str) -> None:
        """退单: not this unit's job."""
        await self._send(Return, case_id, "return", reason=reason)

    async def request_extension(self, case_id: str, hours: float, reason: str) -> None:
        """延期申请."""
        await self._send(RequestExtension, case_id, f"extend:{hours}", hours=hours, reason=reason)

    # ---- what the bus tells the department ---------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        case_id = getattr(event, "case_id", "")
        if isinstance(event, cases.CaseDispatched):
            self._role = event.lead_unit.role.value
            self.cases[case_id] = LocalCase(case_id, event.street_code, event.category_code, event.due_at)
            await self._record(case_id, "received", event)
            await self._send(Acknowledge, case_id, f"acknowledge:{event.dispatch_round}")
            return
        case = self.cases.get(case_id)
        if case is None:
            return  # a case from before this system kept a register: nothing to update
        if isinstance(event, cases.CaseCommandRejected):
            case.rejections.append(f"{event.action}: {event.reason} {event.detail}".strip())
            await self._record(case_id, case.status, event)
            return
        status = {
            cases.CaseAcknowledged: "acknowledged",
            cases.CaseResolved: "resolved",
            cases.CaseClosed: "closed",
            cases.CaseReturned: "returned",
            cases.CaseReopened: "reopened",
            cases.CaseCancelled: "cancelled",
            cases.CaseExtensionApproved: case.status,
            cases.CaseOverdue: case.status,
        }.get(type(event))
        if isinstance(event, cases.CaseVerified):
            status = "verified" if event.passed else "rework"
        if isinstance(event, cases.CaseExtensionApproved):
            case.due_at = event.due_at
        if status is None:
            return
        await self._record(case_id, status, event)
        if isinstance(event, cases.CaseAcknowledged | cases.CaseReopened) or status == "rework":
            if self.on_acknowledged is not None:
                await self.on_acknowledged(case)

    async def _record(self, case_id: str, status: str, event: Event) -> None:
        case = self.cases[case_id]
        case.status = status
        case.history.append(event.event_type)
        log.info("%s %s: %s", self.unit_id, case_id, status)
        async with self._changed:
            self._changed.notify_all()

    async def wait_status(self, case_id: str, status: str, timeout: float = 15.0) -> LocalCase:  # noqa: ASYNC109
        """Wait until a case reaches a status in the local register."""

        def reached() -> bool:
            return case_id in self.cases and self.cases[case_id].status == status

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(reached), timeout)
            except TimeoutError:
                case = self.cases.get(case_id)
                raise AssertionError(
                    f"{case_id} did not reach {status!r} in {timeout}s; it is "
                    f"{case.status if case else 'unknown'} after {case.history if case else []}, "
                    f"rejections {case.rejections if case else []}"
                ) from None
        return self.cases[case_id]
