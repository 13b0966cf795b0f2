"""A laboratory for faults: embedded nats-server and nx-27017 in a folder, services as real processes.

Services run as `xiuhua run SERVICE` child processes (as `xiuhua up` runs them), so a kill is a real SIGKILL
in the middle of whatever the process was doing, and any number of instances can share the durable consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from xiuhua import embedded
from xiuhua.bus import provision_streams
from xiuhua.registry import SERVICES
from xiuhua.settings import DEMO_CITY, Settings
from xiuhua.supervisor import start_service_process


@dataclass
class ServiceProcess:
    """One instance of one service, as a child process with its own HTTP port and log file."""

    service: str
    instance: int
    env: dict[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def label(self) -> str:
        """`dispatch#1`."""
        return f"{self.service}#{self.instance}"

    def start(self) -> None:
        """Start the process (returns at once; see `Lab.wait_healthy`)."""
        self.proc = start_service_process(
            [sys.executable, "-m", "xiuhua", "run", self.service], self.env, self.log_path
        )

    def kill(self) -> None:
        """SIGKILL: no drain, no ack, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(8)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Lab:
    """Servers and service processes under `root`; `settings` points a client at them."""

    root: Path
    max_deliver: int = 3
    # Shorter than the 60 s default: what a killed instance had pulled comes back after this, and the lab's
    # batches take milliseconds. Longer would only slow the scenarios down.
    ack_wait: float = 20.0
    secure: bool = True  # the embedded default's permissions: every service under its own NATS user
    # nats-server nodes: more than one makes a cluster on loopback ports (the configuration deploy/ renders, from
    # the same security model) with every stream at that many replicas.
    cluster_nodes: int = 1
    nats_config: Path | None = None
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)  # per-service extra env (credentials)
    client_env: dict[str, str] = field(default_factory=dict)  # what the lab's own clients use (operator)
    nats: embedded.ServerProcess | None = None  # the one the lab's clients and the services are pointed at
    nodes: list[embedded.ServerProcess] = field(default_factory=list)  # every nats-server node (one unless a cluster)
    store: embedded.ServerProcess | None = None
    processes: list[ServiceProcess] = field(default_factory=list)
    db_prefix: str = field(default_factory=lambda: f"chaos{uuid.uuid4().hex[:8]}_")

    @property
    def settings(self) -> Settings:
        """Settings for clients of this lab (the feeder, the tally)."""
        assert self.nats is not None and self.store is not None, "start the lab first"
        return Settings(
            nats_url=embedded.nats_url(self.nats),
            mongo_url=embedded.mongo_url(self.store),
            db_prefix=self.db_prefix,
            var_dir=self.root / "var",
            city_dir=DEMO_CITY,
            max_deliver=self.max_deliver,
            store_tx_lock_dir=self.root / "locks",
            nats_user=self.client_env.get("XIUHUA_NATS_USER"),
            nats_password=self.client_env.get("XIUHUA_NATS_PASSWORD"),
        )

    async def start(self) -> None:
        """Start the servers and provision the streams."""
        from xiuhua import security

        if self.secure and self.nats_config is None:
            self.nats_config, pw = await asyncio.to_thread(security.write_embedded_config, self.root / "var")
            self.service_env = {s: security.login_env(s, pw[s]) for s in SERVICES}
            self.client_env = security.login_env(security.OPERATOR, pw[security.OPERATOR])
        if self.cluster_nodes > 1:
            self.nodes = self._cluster(security.load_or_create_passwords(self.root / "var" / "security"))
        else:
            self.nodes = [embedded.nats_server(self.root / "nats", config=self.nats_config)]
        self.nats = self.nodes[0]
        self.store = embedded.store_server(self.root / "store")
        for node in self.nodes:
            await asyncio.to_thread(node.start)
        await asyncio.to_thread(self.store.start)
        from xiuhua.bus import connect_options

        await self._provision(connect_options(self.settings))

    def _cluster(self, passwords: dict[str, str]) -> list[embedded.ServerProcess]:
        from xiuhua import security

        routes = [embedded.free_port() for _ in range(self.cluster_nodes)]
        nodes = []
        for i, route in enumerate(routes):
            options = security.ServerOptions(server_name=f"n{i}", cluster={"listen": f"127.0.0.1:{route}"})
            text = security.cluster_config([f"nats://127.0.0.1:{r}" for r in routes if r != route], passwords, options)
            conf = self.root / "var" / "security" / f"nats-n{i}.conf"
            conf.write_text(text)
            nodes.append(embedded.nats_server(self.root / f"nats-n{i}", config=conf))
        return nodes

    async def _provision(self, opts: dict[str, object], timeout: float = 60.0) -> None:  # noqa: ASYNC109
        # A cluster answers JetStream requests once its nodes have elected a meta leader: until then, again.
        deadline = time.monotonic() + timeout
        while True:
            try:
                await provision_streams(
                    [embedded.nats_url(n) for n in self.nodes], replicas=len(self.nodes), connect_opts=opts
                )
                if await self._replicated(opts):
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"streams not replicated on {len(self.nodes)} nodes after {timeout:.0f}s")
            await asyncio.sleep(0.5)

    async def _replicated(self, opts: dict[str, object]) -> bool:
        """Every stream has a leader and every replica is current (a single node: at once)."""
        if len(self.nodes) == 1:
            return True
        from contracts import streams
        from xiuhua.bus import connect_once

        nc = await connect_once([embedded.nats_url(n) for n in self.nodes], **opts)
        try:
            for spec in streams.ALL:
                info = await nc.jetstream().stream_info(spec.name)
                peers = info.cluster.replicas if info.cluster else None
                if not (
                    info.cluster
                    and info.cluster.leader
                    and peers
                    and len(peers) == len(self.nodes) - 1
                    and all(r.current for r in peers)
                ):
                    return False
            return True
        finally:
            await nc.close()

    def node_named(self, name: str) -> embedded.ServerProcess:
        """The cluster node whose server name is `name` (`n0`, `n1` ...)."""
        return self.nodes[int(name.removeprefix("n"))]

    def _env(self, service: str, port: int) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "XIUHUA_NATS_URL": s.nats_url or "",
            "XIUHUA_MONGO_URL": s.mongo_url or "",
            "XIUHUA_HTTP_PORT": str(port),
            "XIUHUA_HTTP_HOST": "127.0.0.1",
            "XIUHUA_VAR_DIR": str(s.var_dir),
            "XIUHUA_CITY_DIR": str(s.city_dir),
            "XIUHUA_DB_PREFIX": self.db_prefix,
            "XIUHUA_MAX_DELIVER": str(self.max_deliver),
            "XIUHUA_ACK_WAIT": str(self.ack_wait),
            "XIUHUA_STORE_TX_LOCK_DIR": str(s.store_tx_lock_dir),
            **self.service_env.get(service, {}),
        }

    def spawn(self, service: str, instance: int = 0) -> ServiceProcess:
        """Start one more instance of a service."""
        port = embedded.free_port()
        p = ServiceProcess(
            service, instance, self._env(service, port), self.root / "logs" / f"{service}-{instance}.log", port
        )
        p.start()
        self.processes.append(p)
        return p

    async def spawn_all(self, instances: int = 1, services: tuple[str, ...] = SERVICES) -> list[ServiceProcess]:
        """`instances` of every service, healthy before this returns. On a cluster, one instance of each at a time:
        the consumers' creation at three replicas is slower than on one node, and the second instance of a service
        finds its durable consumers made."""
        if len(self.nodes) <= 1:
            started = [self.spawn(name, i) for i in range(instances) for name in services]
            await self.wait_healthy(started)
            return started
        started = []
        for i in range(instances):
            wave = [self.spawn(name, i) for name in services]
            await self.wait_healthy(wave, timeout=120.0)
            started += wave
        return started

    async def wait_healthy(self, procs: list[ServiceProcess], timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Until every process answers /health with 200; raises naming the laggards."""
        deadline = time.monotonic() + timeout
        pending = list(procs)
        async with httpx.AsyncClient(timeout=1.0) as client:
            while pending and time.monotonic() < deadline:
                for p in list(pending):
                    if p.proc is not None and p.proc.poll() is not None:
                        printed = p.log_path.with_suffix(".stderr.log")
                        tail = "".join(f.read_text(errors="replace") for f in (p.log_path, printed) if f.exists())
                        tail = tail[-1500:]
                        raise RuntimeError(f"{p.label} exited with {p.proc.returncode} while starting:\n{tail}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"http://127.0.0.1:{p.port}/health")).status_code == 200:
                            pending.remove(p)
                await asyncio.sleep(0.2)
        if pending:
            raise TimeoutError(f"not healthy after {timeout:.0f}s: {', '.join(p.label for p in pending)}")

    async def restart(self, p: ServiceProcess) -> None:
        """Start a killed instance again, on a new port, and wait until it is healthy."""
        p.port = embedded.free_port()
        p.env = {**p.env, "XIUHUA_HTTP_PORT": str(p.port)}
        p.start()
        await self.wait_healthy([p])

    def log_text(self) -> str:
        """Everything the services logged (for personal-data scans)."""
        return "\n".join(p.read_text(errors="replace") for p in sorted((self.root / "logs").glob("*.log")))

    def stop(self) -> None:
        """Services first, then the servers."""
        for p in self.processes:
            p.stop()
        for srv in (self.store, *self.nodes):
            if srv is not None:
                srv.stop()


@contextlib.asynccontextmanager
async def lab(root: Path, **kwargs: object):
    """A started lab that stops everything it started on exit."""
    the_lab = Lab(root, **kwargs)  # type: ignore[arg-type]
    try:
        await the_lab.start()
        yield the_lab
    finally:
        await asyncio.to_thread(the_lab.stop)
