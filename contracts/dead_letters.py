"""Dead letters, `dlq.v1.<service>`: a message a service could not apply, with the error."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from contracts import subjects
from contracts.envelope import Event


class DeadLetter(Event):
    """A message that exhausted its deliveries or could not be decoded; re-drivable as it was."""

    event_type: ClassVar[str] = "dlq.dead_letter"

    service: str
    consumer: str
    original_subject: str
    original_msg_id: str | None = None
    stream_seq: int | None = None
    deliveries: int = Field(ge=0)
    error: str = Field(description="Exception type and message, no stack trace")
    payload_b64: str = Field(description="The original body, base64, byte for byte")
    headers: dict[str, str] = Field(default_factory=dict)

    def subject_for(self) -> str:
        return subjects.dlq_subject(self.service)

    @classmethod
    def subject_pattern(cls) -> str:
        return subjects.DLQ

    example_fields: ClassVar[dict[str, object]] = {
        "correlation_id": "",
        "service": "scoring",
        "consumer": "scoring-cases",
        "original_subject": "case.v1.dispatched.CD",
        "original_msg_id": "01935d1e-7a4c-7c3d-8e9f-0123456789ab",
        "stream_seq": 42,
        "deliveries": 5,
        "error": "ValidationError: 1 validation error for CaseDispatched",
        "payload_b64": "e30=",
        "headers": {},
    }
