"""Decoding `cmd.v1.case.<action>`: commands are not events, and a bad one is answered, not dead-lettered."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from contracts.commands import COMMANDS, CaseCommand
from xiuhua.consumer import Poison


@dataclass(frozen=True)
class InvalidCommand:
    """A command that breaks its schema but names its case: dispatch answers `command_rejected` (invalid)."""

    action: str
    case_id: str
    command_id: str
    detail: str


@dataclass(frozen=True)
class NotDispatchs:
    """A command another service applies (`CaseCommand.handled_by`): dispatch acknowledges it and does nothing."""

    action: str


def decode_command(subject: str, data: bytes) -> CaseCommand | InvalidCommand | NotDispatchs:
    """The command model of the subject's action; an unreadable body or one without a case id is poison."""
    action = subject.rsplit(".", 1)[-1]
    if (owned := COMMANDS.get(action)) is not None and owned.handled_by != "dispatch":
        return NotDispatchs(action)  # its service answers it, bad body or not
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Poison(f"command body is not JSON: {exc}") from exc
    case_id = body.get("case_id") if isinstance(body, dict) else None
    if not isinstance(case_id, str) or not case_id.strip():
        raise Poison(f"{action} command without a readable case_id")
    command_id = body.get("command_id")
    command_id = command_id if isinstance(command_id, str) and command_id else f"unknown:{subject}"
    model = COMMANDS.get(action)
    if model is None:
        return InvalidCommand(action, case_id.strip(), command_id, f"unknown action {action!r}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        return InvalidCommand(action, case_id.strip(), command_id, detail[:1000])
