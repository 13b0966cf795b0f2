"""What the client raises: one base class, and errors that say what went wrong and what to do."""

from __future__ import annotations

from pydantic import ValidationError


class XiuhuaError(Exception):
    """Base of every error the client raises."""


class NotConnected(XiuhuaError):
    """The client was used outside `async with` (or after `close()`)."""


class ConnectFailed(XiuhuaError):
    """NATS could not be reached."""


class InvalidMessage(XiuhuaError, ValueError):
    """A report or command does not match its contract; `problems` lists `field: message` lines."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{what} does not match its contract: " + "; ".join(problems))

    @classmethod
    def from_validation(cls, what: str, exc: ValidationError) -> InvalidMessage:
        """Build from pydantic's error, one line per offending field."""
        return cls(what, [f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in exc.errors()])


class PublishFailed(XiuhuaError):
    """JetStream did not store the message (no stream for the subject, timeout, refused)."""


class WaitTimeout(XiuhuaError, TimeoutError):
    """`wait_for` saw no matching message in time; the text lists what it did see."""


class SubscribeFailed(XiuhuaError):
    """The durable consumer could not be created or bound."""


class NoAnswer(XiuhuaError, TimeoutError):
    """A query got no reply: no scoring instance listens on the subject, or none answered in time."""


class QueryFailed(XiuhuaError):
    """Scoring answered a query with an error reply (`score.query.error`).

    `code` is one of `contracts.queries.ERROR_CODES` (bad_request, unknown_unit, unknown_merchant, bad_period,
    unknown_query, internal); `correlation_id` (`q-…`) is the id of the service's log line about the request:
    quote it to the operator.
    """

    def __init__(self, subject: str, code: str, message: str, correlation_id: str) -> None:
        self.subject, self.code, self.message, self.correlation_id = subject, code, message, correlation_id
        super().__init__(f"{subject}: {code} ({message}); reference {correlation_id}")
