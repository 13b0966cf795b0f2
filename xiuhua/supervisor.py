"""`xiuhua up`: the embedded default. Starts the servers, provisions streams, runs and watches the services.

A crashed child is restarted with back-off and the restart logged; a child that crashes too often stops the
whole run with a message naming it. SIGINT/SIGTERM stop everything it started, services first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats

from xiuhua import embedded, logs
from xiuhua.bus import connect_options, provision_streams
from xiuhua.registry import SERVICES, spec
from xiuhua.security import login_env
from xiuhua.settings import Settings

if TYPE_CHECKING:
    from xiuhua.city import City

log = logging.getLogger("xiuhua.up")

MAX_CRASHES = 5
CRASH_WINDOW_S = 60.0


class GiveUp(RuntimeError):
    """A child keeps crashing."""


@dataclass
class Child:
    """A supervised service process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    tcp: dict[str, int] = field(default_factory=dict)  # TCP edges it serves besides HTTP: name → port
    proc: subprocess.Popen[bytes] | None = None
    crashes: list[float] = field(default_factory=list)
    restart_at: float = 0.0

    def start(self) -> None:
        """Start the process, logging to its rotated file (what it prints besides to `<name>.stderr.log`)."""
        self.proc = start_service_process(self.argv, self.env, self.log_path)


def start_service_process(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A service process that logs to `log_path` (rotated by size, `XIUHUA_LOG_MAX_BYTES` and `XIUHUA_LOG_BACKUPS`)
    and prints what it prints outside logging beside it; it dies with this process."""
    with logs.child_output(log_path) as fh:
        return subprocess.Popen(
            argv,
            env={**env, **logs.child_env(log_path)},
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=embedded._die_with_parent,
        )


# A feed of reports to run beside the services (`xiuhua up --demo`): it comes from the tools, which the runtime
# never imports, as (nats_url, city, rate=, connect_opts=, hj212=) -> coroutine.
DemoFeed = Callable[..., Coroutine[Any, Any, None]]


class Supervisor:
    """Runs the embedded default."""

    first_restart_s = 0.5  # the back-off before a crashed child's first restart, doubling with each crash after

    def __init__(
        self,
        settings: Settings,
        *,
        demo: DemoFeed | None = None,
        demo_rate: float = 1.0,
        quiet: bool = False,
    ) -> None:
        self.settings = settings
        self.var = settings.var_dir
        self.demo = demo
        self.demo_rate = demo_rate
        self.quiet = quiet
        self.servers: list[embedded.ServerProcess] = []
        self.children: list[Child] = []
        self.nats_url = settings.nats_url
        self.mongo_url = settings.mongo_url
        self.embedded_store = False
        self._stop = asyncio.Event()
        self.counts = {"reports": 0, "opened": 0, "dispatched": 0, "rejected": 0, "alerts": 0, "dead": 0}
        self.passwords: dict[str, str] = {}  # per-user NATS passwords when the embedded server enforces them
        self.client = settings  # what this process's own connections use (the operator user when secured)

    def say(self, text: str) -> None:
        """A line for the operator."""
        if not self.quiet:
            print(text, flush=True)

    def start_servers(self) -> None:
        """Start what is not configured externally."""
        if not self.nats_url:
            config = None
            if not (self.settings.nats_user or self.settings.nats_creds_file):
                # Least privilege in the embedded default too: each service connects as its own user.
                from xiuhua import security
                from xiuhua.city import load_city

                city = load_city(self.settings.city_dir).security  # the integrators the city adds or restricts
                config, self.passwords = security.write_embedded_config(self.var, city=city)
                self.client = security.as_operator(self.settings, self.passwords)
            srv = embedded.nats_server(self.var / "nats", config=config)
            srv.start()
            self.servers.append(srv)
            self.nats_url = embedded.nats_url(srv)
            self.say(f"nats-server (JetStream) on {self.nats_url}, data in {self.var / 'nats'}")
        if not self.mongo_url:
            srv = embedded.store_server(self.var / "store")
            srv.start()
            self.servers.append(srv)
            self.mongo_url = embedded.mongo_url(srv)
            self.embedded_store = True
            self.say(f"nx-27017 store on {self.mongo_url}, data in {self.var / 'store'}")

    def spawn_services(self) -> None:
        """One process per service, each with its own HTTP port."""
        (self.var / "logs").mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            port = embedded.free_port()
            # Intake's HJ 212 edge keeps its port across restarts: devices are configured with it once.
            tcp = {"hj212": embedded.free_port()} if name == "intake" else {}
            env = {
                **os.environ,
                "XIUHUA_NATS_URL": self.nats_url or "",
                "XIUHUA_MONGO_URL": self.mongo_url or "",
                "XIUHUA_HTTP_PORT": str(port),
                "XIUHUA_VAR_DIR": str(self.var),
                "XIUHUA_CITY_DIR": str(self.settings.city_dir),
                "XIUHUA_BULLETIN_SCHEDULE": str(self.settings.bulletin_schedule).lower(),
                **({"XIUHUA_STORE_TX_LOCK_DIR": str(self.var / "store" / "locks")} if self.embedded_store else {}),
                **(login_env(name, self.passwords[name]) if self.passwords else {}),
                **({"XIUHUA_HJ212_PORT": str(tcp["hj212"])} if "hj212" in tcp else {}),
            }
            child = Child(
                name, [sys.executable, "-m", "xiuhua", "run", name], env, self.var / "logs" / f"{name}.log", port, tcp
            )
            child.start()
            self.children.append(child)

    def endpoints(self) -> dict[str, Any]:
        """Every URL this run serves."""
        host = self.settings.http_host
        return {
            "nats": self.nats_url,
            "store": self.mongo_url,
            "services": {
                c.name: {
                    "pid": c.proc.pid if c.proc else None,
                    "http": f"http://{host}:{c.port}",
                    "metrics": f"http://{host}:{c.port}/metrics",
                    "health": f"http://{host}:{c.port}/health",
                    **({"open311": f"http://{host}:{c.port}/open311/v2/"} if c.name == "intake" else {}),
                    **{edge: f"tcp://{host}:{port}" for edge, port in c.tcp.items()},
                }
                for c in self.children
            },
            "city": str(self.settings.city_dir),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def write_endpoints(self) -> Path:
        """var/endpoints.json, written atomically."""
        path = self.var / "endpoints.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.endpoints(), indent=2, ensure_ascii=False))
        tmp.replace(path)
        return path

    async def wait_healthy(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109 - a deadline, not a cancel
        """Until every service answers /health with 200."""
        import httpx

        deadline = time.monotonic() + timeout
        pending = {c.name: c for c in self.children}
        async with httpx.AsyncClient(timeout=1.0) as client:
            while pending and time.monotonic() < deadline:
                for name, c in list(pending.items()):
                    with contextlib.suppress(httpx.HTTPError):
                        r = await client.get(f"http://{self.settings.http_host}:{c.port}/health")
                        if r.status_code == 200:
                            del pending[name]
                    self.check_children()
                await asyncio.sleep(0.2)
        if pending:
            raise GiveUp(f"services not healthy after {timeout:.0f}s: {', '.join(pending)} (see var/logs/)")

    def check_children(self) -> None:
        """Restart crashed children with back-off; give up on one that keeps crashing."""
        now = time.monotonic()
        for c in self.children:
            if c.proc is None or c.proc.poll() is None:
                continue
            if c.restart_at == 0.0:
                c.crashes = [t for t in c.crashes if now - t < CRASH_WINDOW_S] + [now]
                if len(c.crashes) > MAX_CRASHES:
                    raise GiveUp(
                        f"service {c.name} crashed {len(c.crashes)} times in {CRASH_WINDOW_S:.0f}s "
                        f"(last exit code {c.proc.returncode}); see {c.log_path}"
                    )
                delay = min(30.0, self.first_restart_s * 2 ** (len(c.crashes) - 1))
                c.restart_at = now + delay
                log.warning("service %s exited with %s; restarting in %.1fs", c.name, c.proc.returncode, delay)
                self.say(f"! {c.name} exited with code {c.proc.returncode}; restarting in {delay:.1f}s")
            elif now >= c.restart_at:
                c.restart_at = 0.0
                c.start()
                self.write_endpoints()
                log.warning("service %s restarted (pid %s)", c.name, c.proc.pid if c.proc else "?")
                self.say(f"! {c.name} restarted (pid {c.proc.pid if c.proc else '?'})")
        for srv in self.servers:
            if not srv.alive():
                log.warning("%s died; restarting on the same data", srv.name)
                self.say(f"! {srv.name} died; restarting on the same data")
                srv.start()

    async def watch_bus(self) -> None:
        """Count what flows, for the one-line console summary."""
        nc = await nats.connect(self.nats_url, **connect_options(self.client))
        keys = {
            "report.v1.in.>": "reports",
            "case.v1.opened.>": "opened",
            "case.v1.dispatched.>": "dispatched",
            "report.v1.rejected": "rejected",
            "notify.v1.delivered": "alerts",
            "dlq.v1.>": "dead",
        }

        def counter(key: str):
            async def cb(_msg: Any) -> None:
                self.counts[key] += 1

            return cb

        try:
            for subject, key in keys.items():
                await nc.subscribe(subject, cb=counter(key))
            await self._stop.wait()
        finally:
            await nc.close()

    async def console(self) -> None:
        """The live one-line summary."""
        tty = sys.stdout.isatty()
        while not self._stop.is_set():
            c = self.counts
            line = (
                f"reports in {c['reports']} · cases opened {c['opened']} · dispatched {c['dispatched']} · "
                f"rejected {c['rejected']} · alerts sent {c['alerts']} · dead letters {c['dead']}"
            )
            if tty:
                print("\r" + line + " " * 4, end="", flush=True)
            elif not self.quiet:
                print(line, flush=True)
            await asyncio.sleep(1.0 if tty else 10.0)

    def _checked_city(self) -> City | None:
        """The city, checked by every service; None (after saying which file and line) when its data is broken."""
        # A broken city folder is the operator's most likely mistake: say which file and line, start nothing.
        from xiuhua.city import CityDataError, load_city

        try:
            city = load_city(self.settings.city_dir)
            for name in SERVICES:  # each service's own files (open311.yaml, routing cross-checks ...)
                check = spec(name).check_city
                if check is not None:
                    check(city)
        except CityDataError as exc:
            self.say(f"city data error:\n{exc}")
            return None
        return city

    def _announce_endpoints(self) -> None:
        """Write var/endpoints.json and tell the operator each service's addresses."""
        path = self.write_endpoints()
        self.say(f"endpoints written to {path}:")
        for name, ep in self.endpoints()["services"].items():
            self.say(f"  {name:9s} {ep['http']}  (metrics {ep['metrics']}, health {ep['health']})")
        self.say("Ctrl-C stops everything.")

    def _demo_feed(self, demo: DemoFeed) -> Coroutine[Any, Any, None]:
        """The demo feeder of reports (上报) at the demo rate, to the HJ 212 listener when one is up."""
        from xiuhua.city import load_city

        self.say(f"demo feed: {self.demo_rate:g} report(s) per second")
        city = load_city(self.settings.city_dir)
        opts = connect_options(self.client)
        hj212 = next((c.tcp["hj212"] for c in self.children if "hj212" in c.tcp), None)
        address = f"tcp://{self.settings.http_host}:{hj212}" if hj212 else None
        return demo(self.nats_url or "", city, rate=self.demo_rate, connect_opts=opts, hj212=address)

    async def run(self) -> int:
        """Start everything, supervise until a signal, stop everything."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        self.var.mkdir(parents=True, exist_ok=True)
        tasks: list[asyncio.Task[Any]] = []
        code = 0
        try:
            city = self._checked_city()
            if city is None:
                return 2
            await asyncio.to_thread(self.start_servers)
            for line in await provision_streams(
                self.nats_url or "",
                replicas=self.settings.stream_replicas,
                connect_opts=connect_options(self.client),
                max_ages=city.retention.stream_ages(),
            ):
                self.say(f"stream {line}")
            self.spawn_services()
            await self.wait_healthy()
            self._announce_endpoints()
            tasks.append(asyncio.create_task(self.watch_bus()))
            tasks.append(asyncio.create_task(self.console()))
            if self.demo is not None:
                tasks.append(asyncio.create_task(self._demo_feed(self.demo)))
            while not self._stop.is_set():
                self.check_children()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.5)
        except GiveUp as exc:
            self.say(f"\nstopping: {exc}")
            code = 1
        except Exception as exc:
            self.say(f"\nstopping: {type(exc).__name__}: {exc}")
            log.exception("up failed")
            code = 1
        finally:
            self._stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self.shutdown)
        return code

    def shutdown(self) -> None:
        """Services first (they drain), then the servers."""
        self.say("\nstopping services ...")
        for c in self.children:
            if c.proc and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8
        for c in self.children:
            if c.proc:
                try:
                    c.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait(5)
        for srv in reversed(self.servers):
            srv.stop()
        self.say("stopped.")
