"""Logs ops can follow: one JSON object a line with the message's ids, text on a terminal, files that rotate."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from xiuhua import logs


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, given back as it was (handlers, level, the process's fields and field sources)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    process, sources = dict(logs._process), list(logs._sources)
    yield root
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    logs._process.clear()
    logs._process.update(process)
    logs._sources[:] = sources


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(msg: str = "m", **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("xiuhua.test")
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, (), None, extra=extra or None)


def test_text_on_a_terminal_json_elsewhere_unless_asked() -> None:
    assert logs.wants_json("auto", _Tty()) is False
    assert logs.wants_json("auto", io.StringIO()) is True  # a pipe, a file, a collector
    assert logs.wants_json("json", _Tty()) is True
    assert logs.wants_json("text", io.StringIO()) is False


def test_a_json_line_is_one_object_with_the_bound_fields_and_the_messages_ids() -> None:
    with logs.log_context(service="dispatch", consumer="dispatch-opened"):
        record = _record("%s back for retry", msg_id="e-1", case_id="C-1", correlation_id="grid:7")
    record.args = ("case.v1.opened.CD",)
    line = logs.json_formatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "case.v1.opened.CD back for retry"
    assert (doc["level"], doc["logger"]) == ("WARNING", "xiuhua.test")
    assert {k: doc[k] for k in logs.FIELDS} == {
        "service": "dispatch",
        "consumer": "dispatch-opened",
        "msg_id": "e-1",
        "correlation_id": "grid:7",
        "case_id": "C-1",
    }
    assert doc["time"].endswith("Z") and "T" in doc["time"]
    assert logs.BOUND not in doc


def test_fields_bound_outside_a_block_are_gone_after_it_and_a_lines_own_win() -> None:
    with logs.log_context(consumer="a", case_id="C-bound"):
        inside = _record(case_id="C-line")
        with logs.log_context(consumer="b"):
            nested = _record()
    after = _record()
    assert logs.fields_of(inside) == {"consumer": "a", "case_id": "C-line"}
    assert logs.fields_of(nested) == {"consumer": "b", "case_id": "C-bound"}
    assert logs.fields_of(after) == {}


def test_a_traceback_stays_inside_its_json_line() -> None:
    try:
        raise ValueError("坏了")
    except ValueError:
        logger = logging.getLogger("xiuhua.test")
        import sys

        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    doc = json.loads(logs.json_formatter().format(record))
    assert "ValueError: 坏了" in doc["traceback"]


def test_a_field_source_adds_to_every_line_in_json_and_text(root) -> None:
    logs.add_field_source(lambda: {"trace_id": "4bf92f3577b34da6"})
    record = _record(msg_id="e-1")
    assert json.loads(logs.json_formatter().format(record))["trace_id"] == "4bf92f3577b34da6"
    assert logs.TextFormatter().format(record).endswith("[msg_id=e-1 trace_id=4bf92f3577b34da6]")


def test_a_text_line_names_the_fields_after_the_message_before_a_traceback() -> None:
    with logs.log_context(service="notify", consumer="notify-cases"):
        record = _record("back for retry", msg_id="e-9", case_id="C-9")
    text = logs.TextFormatter().format(record)
    assert text.endswith("xiuhua.test: back for retry [consumer=notify-cases msg_id=e-9 case_id=C-9]")
    assert logs.TextFormatter().format(_record("plain")).endswith(": plain")  # no empty brackets


def test_message_fields_take_the_ids_a_body_has() -> None:
    class Body:
        correlation_id = "hotline:12345-1"
        case_id = "C-7"

    assert logs.message_fields("e-7", Body()) == {
        "msg_id": "e-7",
        "correlation_id": "hotline:12345-1",
        "case_id": "C-7",
    }
    assert logs.message_fields("e-8", "grid") == {"msg_id": "e-8"}  # a raw report: no case yet


def test_a_service_log_file_rotates_at_its_size_and_keeps_its_count(root, tmp_path: Path) -> None:
    path = tmp_path / "logs" / "intake.log"
    logs.configure(level="INFO", file=path, max_bytes=2048, backups=2, service="intake")
    log = logging.getLogger("xiuhua.test")
    for i in range(200):
        log.info("line %03d %s", i, "x" * 40)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["intake.log", "intake.log.1", "intake.log.2"]  # the oldest beyond two are gone
    for p in path.parent.iterdir():
        assert p.stat().st_size <= 2048
        lines = p.read_text(encoding="utf-8").splitlines()
        assert all(json.loads(line)["service"] == "intake" for line in lines)  # JSON in a file by default
    last = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    assert last["message"].startswith("line 199")


def test_configure_again_replaces_its_own_handler_only(root) -> None:
    other = logging.NullHandler()
    root.addHandler(other)
    first = logs.configure(fmt="text")
    second = logs.configure(fmt="json")
    assert other in root.handlers and second in root.handlers and first not in root.handlers
    root.removeHandler(other)


def test_a_childs_printed_output_rotates_past_its_size_not_at_it(tmp_path: Path) -> None:
    path = tmp_path / "notify.stderr.log"
    path.write_bytes(b"x" * 100)
    logs.rotate_if_larger(path, 100, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["notify.stderr.log"]  # exactly at the size: kept
    path.write_bytes(b"y" * 101)
    logs.rotate_if_larger(path, 100, 2)
    assert not path.exists() and (tmp_path / "notify.stderr.log.1").read_bytes() == b"y" * 101
    for text in (b"z" * 101, b"w" * 101):
        path.write_bytes(text)
        logs.rotate_if_larger(path, 100, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notify.stderr.log.1", "notify.stderr.log.2"]
    assert (tmp_path / "notify.stderr.log.1").read_bytes() == b"w" * 101  # newest first, the oldest dropped


def test_an_embedded_server_rotates_its_outgrown_logs_when_it_starts(tmp_path: Path, monkeypatch) -> None:
    from xiuhua import embedded

    monkeypatch.setenv("XIUHUA_LOG_MAX_BYTES", "1024")
    srv = embedded.store_server(tmp_path)
    (tmp_path / "nx-27017.log").write_bytes(b"x" * 1025)
    srv.start()
    try:
        assert (tmp_path / "nx-27017.log.1").stat().st_size == 1025
    finally:
        srv.stop()
