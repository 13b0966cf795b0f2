"""`xiuhua up` supervises: a killed service comes back; one that keeps crashing stops the run naming it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from xiuhua.settings import DEMO_CITY

XIUHUA = str(Path(sys.executable).parent / "xiuhua")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIUHUA_")}
    env.update({"XIUHUA_VAR_DIR": str(tmp_path / "var"), "XIUHUA_CITY_DIR": str(DEMO_CITY), **extra})
    return env


def _wait_endpoints(proc: subprocess.Popen[bytes], path: Path) -> dict:
    deadline = time.monotonic() + 90
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline, "endpoints.json not written"
        time.sleep(0.2)
    return json.loads(path.read_text())


def test_a_killed_service_is_restarted(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [XIUHUA, "up", "--quiet"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    path = tmp_path / "var" / "endpoints.json"
    try:
        first = _wait_endpoints(proc, path)["services"]["scoring"]
        os.kill(first["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        restarted = None
        while time.monotonic() < deadline:
            now = json.loads(path.read_text())["services"]["scoring"]
            if now["pid"] != first["pid"] and psutil.pid_exists(now["pid"]):
                try:
                    if httpx.get(now["health"], timeout=2).status_code == 200:
                        restarted = now
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        assert restarted is not None, "scoring was not restarted and healthy within 60s"
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0].decode()
        assert proc.returncode == 0
        assert "service scoring exited with -9" in out and "service scoring restarted" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


async def test_a_service_that_keeps_crashing_stops_the_run_with_its_name(tmp_path: Path, capsys) -> None:
    from xiuhua.settings import Settings
    from xiuhua.supervisor import Supervisor

    class Crashing(Supervisor):
        first_restart_s = 0.05  # the same doubling back-off, a tenth as long: 1.6 s of waits, not 15.5

        def spawn_services(self) -> None:
            super().spawn_services()
            for child in self.children:  # every start of intake exits at once with code 3
                if child.name == "intake":
                    child.argv = [sys.executable, "-c", "import sys; sys.exit(3)"]
                    child.proc.kill()

    sup = Crashing(Settings(var_dir=tmp_path / "var", city_dir=DEMO_CITY))
    started = time.monotonic()
    code = await sup.run()
    out = capsys.readouterr().out
    assert code == 1
    assert "service intake crashed 6 times in 60s (last exit code 3)" in out, out[-2000:]
    delays = [float(d) for d in re.findall(r"intake exited with code -?[0-9]+; restarting in ([0-9.]+)s", out)]
    assert delays == [round(0.05 * 2**i, 1) for i in range(5)], out[-2000:]  # each wait twice the one before
    assert time.monotonic() - started < 60
    assert all(c.proc.poll() is not None for c in sup.children)
    assert all(not srv.alive() for srv in sup.servers)


def test_broken_city_data_is_reported_with_file_and_line_before_anything_starts(tmp_path: Path) -> None:
    city = tmp_path / "city"
    shutil.copytree(DEMO_CITY, city)
    (city / "units.yaml").write_text("units:\n  - id: X\n    name: x\n    role: wizard\n", encoding="utf-8")
    env = _env(tmp_path, XIUHUA_CITY_DIR=str(city))
    proc = subprocess.run([XIUHUA, "up"], env=env, capture_output=True, timeout=60)
    out = proc.stdout.decode()
    assert proc.returncode == 2
    assert f"{city / 'units.yaml'}:4: units.0.role" in out
    assert not (tmp_path / "var" / "nats").exists()
