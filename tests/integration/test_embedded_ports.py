"""A server whose chosen port another process takes first: it is never mistaken for ours, and the first start
moves to another free port; a port the caller named stays, and the start fails saying why."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from xiuhua import embedded


@pytest.fixture
def squatter() -> Iterator[int]:
    """A port somebody else listens on (it answers connections, as another test worker's server would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _taken_first(monkeypatch: pytest.MonkeyPatch, taken: int) -> list[int]:
    """`free_port` answers `taken` once (the race lost), then truly free ports; returns what it answered."""
    answered: list[int] = []
    real = embedded.free_port

    def free_port() -> int:
        port = taken if not answered else real()
        answered.append(port)
        return port

    monkeypatch.setattr(embedded, "free_port", free_port)
    return answered


@pytest.mark.parametrize("make", [embedded.nats_server, embedded.store_server], ids=["nats-server", "nx-27017"])
def test_a_chosen_port_taken_meanwhile_moves_to_another(
    make, squatter: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = _taken_first(monkeypatch, squatter)
    srv = make(tmp_path / "srv")
    assert srv.port == squatter  # chosen while it was free, as far as this process could tell
    srv.start()
    try:
        assert srv.port != squatter and srv.port == answered[-1] and len(answered) == 2
        assert embedded._listens(srv.proc.pid, srv.port)  # the server itself, not the squatter
        assert str(srv.port) in srv.argv and str(squatter) not in srv.argv
    finally:
        srv.stop()


def test_a_named_port_taken_fails_naming_it(squatter: int, tmp_path: Path) -> None:
    srv = embedded.nats_server(tmp_path / "nats", port=squatter)
    with pytest.raises(embedded.PortTaken, match=str(squatter)):
        srv.start(timeout=10)
    assert srv.port == squatter


def test_a_restart_keeps_its_port(tmp_path: Path) -> None:
    srv = embedded.nats_server(tmp_path / "nats")
    srv.start()
    port = srv.port
    srv.stop()
    with socket.socket() as s:  # somebody takes the port while it is down: the restart must not wander off
        s.bind(("127.0.0.1", port))
        s.listen()
        with pytest.raises(embedded.PortTaken):
            srv.start(timeout=10)
    assert srv.port == port


def test_listens_is_false_for_another_process_on_the_port(squatter: int, tmp_path: Path) -> None:
    srv = embedded.nats_server(tmp_path / "nats")
    srv.start()
    try:
        assert embedded._listens(srv.proc.pid, srv.port)
        assert not embedded._listens(srv.proc.pid, squatter)
    finally:
        srv.stop()
