"""Which model a subject carries: the one place that decodes bus messages."""

from __future__ import annotations

from contracts.cases import CaseDispatched, CaseOpened
from contracts.dead_letters import DeadLetter
from contracts.envelope import Event
from contracts.notifications import NotificationDelivered
from contracts.reports import ReportRejected
from contracts.scores import UnitScoreUpdated

EVENTS: list[type[Event]] = [
    ReportRejected,
    CaseOpened,
    CaseDispatched,
    UnitScoreUpdated,
    NotificationDelivered,
    DeadLetter,
]


class UnknownSubject(LookupError):
    """No model is registered for a subject."""


def register(model: type[Event]) -> type[Event]:
    """Add an event model to the registry (used as a class decorator by later contract modules)."""
    if model not in EVENTS:
        EVENTS.append(model)
    return model


def _key(subject: str) -> str:
    parts = subject.split(".")
    if parts[0] == "case" and len(parts) >= 3:
        return f"case.{parts[2]}"
    if parts[0] == "dlq":
        return "dlq.dead_letter"
    if len(parts) >= 3:
        return f"{parts[0]}.{'.'.join(parts[2:])}"
    return subject


def model_for(subject: str) -> type[Event]:
    """The event model carried on `subject`."""
    key = _key(subject)
    for model in EVENTS:
        if model.event_type == key:
            return model
    raise UnknownSubject(subject)


def decode(subject: str, data: bytes) -> Event:
    """Parse and validate a message body; raises UnknownSubject or pydantic.ValidationError."""
    return model_for(subject).model_validate_json(data)
