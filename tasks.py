#!/usr/bin/env python3.11
"""Set-up and entry point on a fresh machine with Python 3.11: creates or reuses .venv, then runs.

    python3.11 tasks.py up      # the whole system on the embedded default (add --demo for a live feed)
    python3.11 tasks.py test    # the test suite
Anything after the task is passed on (`tasks.py up --demo`, `tasks.py test -k slice`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".xiuhua-installed"


def ensure_venv() -> None:
    """Create the venv if missing; (re)install when pyproject.toml changed since the last install."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Python 3.11 is required (this is {sys.version.split()[0]}); run: python3.11 tasks.py ...")
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    print("installing dependencies into .venv (first run takes a minute) ...", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(want)


# Debian packages the project uses where it can: Chromium prints the bulletin's PDF and renders its HTML in its
# test; the Noto CJK fonts give the charts their Chinese glyphs; `prometheus` ships `promtool`, which runs the alert
# rules' unit tests (deploy/prometheus/tests). Without them each degrades (no PDF, the test skipped with a reason).
SYSTEM_PACKAGES = {"/usr/bin/chromium": "chromium", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc":
                   "fonts-noto-cjk", "/usr/bin/promtool": "prometheus"}
# Packages wanted for a tool they ship, not for their service: installed without recommends (prometheus would
# bring the node exporter, smartmontools, ipmitool), no service started while installing (Debian's policy-rc.d,
# 101: action forbidden), and left disabled where systemd would start them at boot.
TOOLS_ONLY = {"prometheus"}
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def _apt_install(packages: list[str], quiet: dict[str, object], *extra: str) -> int:
    """apt-get install, once more after an update when the package lists are stale; the exit code."""
    cmd = ["apt-get", "install", "-y", "-q", *extra, *packages]
    if code := subprocess.run(cmd, **quiet, timeout=900).returncode:  # type: ignore[call-overload]
        subprocess.run(["apt-get", "update", "-q"], **quiet, timeout=300)  # type: ignore[call-overload]
        code = subprocess.run(cmd, **quiet, timeout=900).returncode  # type: ignore[call-overload]
    return int(code)


def ensure_system_packages() -> None:
    """Install the missing ones when this is a Debian machine we may administer (root, apt); never fatal."""
    missing = [pkg for path, pkg in SYSTEM_PACKAGES.items() if not Path(path).exists()]
    if not missing or os.environ.get("XIUHUA_NO_APT") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print(f"installing {' '.join(missing)} from Debian (XIUHUA_NO_APT=1 skips) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet: dict[str, object] = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    tools = [p for p in missing if p in TOOLS_ONLY]
    ours = bool(tools) and not POLICY_RC_D.exists()
    try:
        if packages := [p for p in missing if p not in TOOLS_ONLY]:
            _apt_install(packages, quiet)
        if tools:
            if ours:
                POLICY_RC_D.write_text("#!/bin/sh\n# tasks.py, for one install: start no service\nexit 101\n")
                POLICY_RC_D.chmod(0o755)
            if not _apt_install(tools, quiet, "--no-install-recommends") and Path("/run/systemd/system").exists():
                subprocess.run(["systemctl", "disable", "--now", *tools], **quiet, timeout=60)  # type: ignore[call-overload]
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"could not install {' '.join(missing)}: {exc}; going without", flush=True)
    finally:
        if ours:
            POLICY_RC_D.unlink(missing_ok=True)


def main() -> int:
    """Dispatch the task."""
    task, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("help", [])
    if task not in {"up", "test"}:
        print(__doc__)
        return 2
    ensure_venv()
    ensure_system_packages()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if task == "up":
        cmd = [str(VENV / "bin" / "xiuhua"), "up", *rest]
    else:
        cmd = [str(PY), "-m", "pytest", *rest]
    os.chdir(ROOT)
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    sys.exit(main())
