"""Decoding `cmd.v1.case.<action>`: commands are not events, and a bad one is answered, not dead-lettered."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.commands import COMMANDS, CaseCommand
from xiuhua.commands import InvalidCommand, decode_case_command

__all__ = ["InvalidCommand", "NotDispatchs", "decode_command"]


@dataclass(frozen=True)
class NotDispatchs:
    """A command another service applies (`CaseCommand.handled_by`): dispatch acknowledges it and does nothing."""

    action: str


def decode_command(subject: str, data: bytes) -> CaseCommand | InvalidCommand | NotDispatchs:
    """The command model of the subject's action; an unreadable body or one without a case id is poison."""
    action = subject.rsplit(".", 1)[-1]
    if (owned := COMMANDS.get(action)) is not None and owned.handled_by != "dispatch":
        return NotDispatchs(action)  # its service answers it, bad body or not
    return decode_case_command(subject, data, owned)
