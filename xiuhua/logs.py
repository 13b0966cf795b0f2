"""Logging for every process: plain text on a terminal, one JSON object a line elsewhere, rotated files.

Every record carries the fields ops follow a message by, where they are known: `service` and `consumer` (bound
for the batch a consumer applies, `log_context`), `msg_id`, `correlation_id` and `case_id` (passed by the line
that names one message, `message_fields`). More fields join every record by `add_field_source`: a function
called per record that returns what it knows now (a trace id, say).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import logging.handlers
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

FIELDS = ("service", "consumer", "msg_id", "correlation_id", "case_id")  # in this order, after the message
BOUND = "xiuhua_bound"  # the record attribute holding the bound fields as the record was made
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LogFormat = Literal["auto", "text", "json"]

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "xiuhua_log_context", default=MappingProxyType({})
)
_process: dict[str, Any] = {}  # fields of every record of this process (its service)
_sources: list[Callable[[], Mapping[str, Any]]] = []
_source_keys: list[str] = []  # the fields sources have given, for the text lines
_OURS = "_xiuhua_installed"  # marks the handler `configure` and the record factory this module installed


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Fields every record logged inside the block carries (nested blocks add to them)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def add_field_source(source: Callable[[], Mapping[str, Any]]) -> None:
    """Add fields to every record from `source`, called as the record is made (its empty or None values left out)."""
    if source not in _sources:
        _sources.append(source)


def message_fields(msg_id: str | None, message: Any = None) -> dict[str, str]:
    """The fields naming one message (for `extra=`): its id, and the correlation and case ids its body has."""
    out = {"msg_id": msg_id}
    for name in ("correlation_id", "case_id"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value:
            out[name] = value
    return {k: v for k, v in out.items() if v}


def _fields_now() -> dict[str, Any]:
    fields: dict[str, Any] = {**_process, **_context.get()}
    for source in _sources:
        try:
            given = source()
        except Exception:  # a broken source must not cost the line
            continue
        fields.update(given)
        _source_keys.extend(k for k in given if k not in _source_keys and k not in FIELDS)
    return fields


def _record_factory(base: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        # Under one attribute: the logging module refuses an `extra=` that names an attribute the record has.
        setattr(record, BOUND, {k: v for k, v in _fields_now().items() if v not in (None, "")})
        return record

    setattr(make, _OURS, True)
    return make


def install_record_fields() -> None:
    """Stamp the bound fields on every record as it is made, whichever handler writes it (a test's capture too).
    Done once, when this module is imported; idempotent."""
    current = logging.getLogRecordFactory()
    if not getattr(current, _OURS, False):
        logging.setLogRecordFactory(_record_factory(current))


install_record_fields()


class TextFormatter(logging.Formatter):
    """The usual line, then `key=value` for the fields a record has."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = fields_of(record)
        extra = " ".join(f"{k}={fields[k]}" for k in (*FIELDS, *_source_keys) if k in fields and k != "service")
        if not extra:
            return line
        head, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{extra}]{newline}{rest}"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """A record's fields: those bound when it was made, and those its line passed (`extra=`), which win."""
    out = dict(getattr(record, BOUND, {}))
    for key in (*FIELDS, *_source_keys):
        value = getattr(record, key, None)
        if value not in (None, ""):
            out[key] = value
    return out


class _JsonLines(JsonFormatter):
    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data.pop(BOUND, None)
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        ordered = {"time": when.replace("+00:00", "Z"), **log_data, **fields_of(record)}
        log_data.clear()
        log_data.update(ordered)


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the fields, the traceback."""
    return _JsonLines(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "traceback"},
        json_ensure_ascii=False,
        json_default=str,
    )


def wants_json(fmt: LogFormat, stream: Any = None) -> bool:
    """JSON unless asked for text, or left to choose (`auto`) while writing to a terminal."""
    if fmt != "auto":
        return fmt == "json"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure(
    *,
    level: int | str = logging.WARNING,
    fmt: LogFormat = "auto",
    file: Path | None = None,
    max_bytes: int = 50 * 2**20,
    backups: int = 5,
    service: str | None = None,
) -> logging.Handler:
    """Set the root logger up for this process (replacing the handler an earlier call installed); returns its
    handler.

    `file`: a rotated log file (`max_bytes` each, `backups` kept beside it as `.1` … `.N`), else standard error."""
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        as_json = fmt == "json" or fmt == "auto"
    else:
        handler = logging.StreamHandler(sys.stderr)
        as_json = wants_json(fmt)
    handler.setFormatter(json_formatter() if as_json else TextFormatter())
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    if service is not None:
        _process["service"] = service
    return handler


def rotate_if_larger(path: Path, max_bytes: int, backups: int) -> None:
    """Rotate a file another process appends to (a child's standard error) when it has outgrown `max_bytes`:
    `path` → `path.1` → … → `path.N`, the oldest dropped, as the log files rotate."""
    if backups < 1 or not path.exists() or path.stat().st_size <= max_bytes:
        return
    for n in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


def file_limits() -> tuple[int, int]:
    """The size at which log files rotate and how many are kept (`XIUHUA_LOG_MAX_BYTES`, `XIUHUA_LOG_BACKUPS`)."""
    from xiuhua.settings import Settings

    s = Settings()
    return s.log_max_bytes, s.log_backups


def child_env(log_file: Path) -> dict[str, str]:
    """What a service process started by `xiuhua up` (or the chaos lab) needs to log to its rotated file."""
    return {"XIUHUA_LOG_FILE": str(log_file)}


def child_output(log_file: Path) -> Any:
    """The file a service process's standard output and error go to, beside its log (`<service>.stderr.log`):
    what it prints outside logging, a traceback of a start that failed. Opened for appending, rotated first when
    it has outgrown the size logs rotate at."""
    path = log_file.with_suffix(".stderr.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    rotate_if_larger(path, *file_limits())
    return path.open("ab")
