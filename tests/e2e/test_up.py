"""`xiuhua up` as a user runs it: endpoints written, every /metrics scraped, SIGINT leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from xiuhua.settings import DEMO_CITY

XIUHUA = str(Path(sys.executable).parent / "xiuhua")


def test_up_serves_metrics_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIUHUA_")}
    env.update({"XIUHUA_VAR_DIR": str(tmp_path / "var"), "XIUHUA_CITY_DIR": str(DEMO_CITY)})
    proc = subprocess.Popen(
        [XIUHUA, "up", "--demo", "--demo-rate", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoints_file = tmp_path / "var" / "endpoints.json"
    try:
        deadline = time.monotonic() + 90
        while not endpoints_file.exists():
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "endpoints.json not written"
            time.sleep(0.2)
        endpoints = json.loads(endpoints_file.read_text())
        assert endpoints["nats"].startswith("nats://127.0.0.1:") and not endpoints["nats"].endswith(":4222")
        assert set(endpoints["services"]) == {"intake", "dispatch", "scoring", "notify"}
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert len(descendants) >= 6  # nats-server, nx-27017, four services

        # The demo feed flows: cases get dispatched and the dispatch service counts them.
        deadline = time.monotonic() + 60
        dispatched = 0.0
        while dispatched < 1 and time.monotonic() < deadline:
            text = httpx.get(endpoints["services"]["dispatch"]["metrics"], timeout=5).text
            dispatched = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("xiuhua_cases_dispatched_total{")
            )
            time.sleep(0.5)
        assert dispatched >= 1

        for name, ep in endpoints["services"].items():
            metrics = httpx.get(ep["metrics"], timeout=5)
            assert metrics.status_code == 200, name
            assert "xiuhua_service_up" in metrics.text and "process_resident_memory_bytes" in metrics.text
            assert "faststream_received_messages_total" in metrics.text or name == "notify"
            health = httpx.get(ep["health"], timeout=5)
            assert health.status_code == 200 and health.json()["status"] == "ok", (name, health.text)

        # Intake's HJ 212 edge is where endpoints.json says: the demo's dust monitors are heard there, and a frame
        # with a bad CRC sent to it is refused bad_crc.
        hj212 = endpoints["services"]["intake"]["hj212"]
        assert hj212.startswith("tcp://127.0.0.1:")
        host, port = hj212.removeprefix("tcp://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            seg = b"QN=1;ST=39;CN=2011;PW=123456;MN=33010020260001;Flag=4;CP=&&DataTime=20261123100000;a34002-Rtd=9&&"
            sock.sendall(b"##" + f"{len(seg):04d}".encode() + seg + b"0000\r\n")

        def hj212_frames(outcome: str) -> float:
            text = httpx.get(endpoints["services"]["intake"]["metrics"], timeout=5).text
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith(f'xiuhua_hj212_frames_total{{outcome="{outcome}"}}')
            )

        deadline = time.monotonic() + 30
        while (hj212_frames("bad_crc") < 1 or hj212_frames("accepted") < 1) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert hj212_frames("bad_crc") == 1 and hj212_frames("accepted") >= 1

        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        assert proc.returncode == 0
        time.sleep(0.5)
        alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], [p.cmdline() for p in alive]
        # Each service logged to its own file, one JSON object a line naming it (the files are not a terminal).
        for name in endpoints["services"]:
            lines = (tmp_path / "var" / "logs" / f"{name}.log").read_text(encoding="utf-8").splitlines()
            started = [json.loads(line) for line in lines if f'"{name} started"' in line]
            assert started and started[0]["service"] == name and started[0]["level"] == "INFO", lines[:3]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
