#!/usr/bin/env python3.11
"""Set-up and entry point on a fresh machine with Python 3.11: creates or reuses .venv, then runs.

    python3.11 tasks.py up      # the whole system on the embedded default (add --demo for a live feed)
    python3.11 tasks.py test    # ruff, mypy against its baseline, then the whole test suite (what CI runs),
                                # in XIUHUA_TEST_WORKERS processes (default 4; 0: one)
    python3.11 tasks.py test -k slice   # pytest only, with these arguments (no lint or types: quick)
    python3.11 tasks.py lint    # ruff and mypy only
    python3.11 tasks.py lock    # regenerate the lock files after changing dependencies in pyproject.toml
    python3.11 tasks.py types --update-baseline   # rewrite mypy-baseline.txt to today's mypy errors
Anything after `up` is passed on (`tasks.py up --demo`); `tasks.py lock --upgrade` moves every pin to the newest.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare Python: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".xiuhua-installed"
PYPROJECT = ROOT / "pyproject.toml"
# Exact versions of everything installed, resolved for Python 3.11 on any platform: the development one (the
# project's dependencies with its `test` and `testing` extras) and the image's (the dependencies alone, at the
# same versions). Both come from pyproject.toml through `tasks.py lock`, never by hand.
LOCK = ROOT / "requirements-dev.lock"
RUNTIME_LOCK = ROOT / "requirements.lock"
LOCKED_EXTRAS = ("test", "testing")
LOCK_COMMAND = "python3.11 tasks.py lock"
SUITE_WORKERS = 4  # pytest-xdist workers for the whole suite (`suite_workers`)
UV = "uv==0.13.8"  # resolves the lock files; pinned so that the same pyproject.toml gives the same locks
BASELINE = ROOT / "mypy-baseline.txt"
BASELINE_COMMAND = "python3.11 tasks.py types --update-baseline"


def _require_311() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Python 3.11 is required (this is {sys.version.split()[0]}); run: python3.11 tasks.py ...")


def _make_venv() -> None:
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)


def locked_versions(lock: Path) -> dict[str, str]:
    """Name (normalised) → version of every `name==version` line of a lock file."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^]]*\])?==([^\s;]+)", line):
            pins[canonicalize_name(m[1])] = m[2]
    return pins


def lock_problems(pyproject: Path = PYPROJECT, lock: Path = LOCK, runtime_lock: Path = RUNTIME_LOCK) -> list[str]:
    """What pyproject.toml asks for that a lock file does not hold (missing, or at a version outside the range)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    runtime = list(project.get("dependencies", []))
    extras = [r for name in LOCKED_EXTRAS for r in project.get("optional-dependencies", {}).get(name, [])]
    problems: list[str] = []
    for path, wanted in ((lock, runtime + extras), (runtime_lock, runtime)):
        if not path.exists():
            problems.append(f"{path.name} does not exist")
            continue
        pins = locked_versions(path)
        for text in wanted:
            req = Requirement(text)
            have = pins.get(canonicalize_name(req.name))
            if have is None:
                problems.append(f"{path.name}: {text} is not in it")
            elif not req.specifier.contains(have, prereleases=True):
                problems.append(f"{path.name}: {text} but it has {req.name}=={have}")
    return problems


def ensure_venv() -> None:
    """Create the venv if missing; (re)install from the lock when pyproject.toml or the lock changed since."""
    _require_311()
    if problems := lock_problems():
        sys.exit(
            "The lock files do not match pyproject.toml's dependencies:\n  "
            + "\n  ".join(problems)
            + f"\nRegenerate them with: {LOCK_COMMAND}"
        )
    _make_venv()
    want = hashlib.sha256(PYPROJECT.read_bytes() + LOCK.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    print(f"installing dependencies into .venv from {LOCK.name} (first run takes a minute) ...", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-r", str(LOCK)], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(want)


def lock(extra_args: list[str]) -> int:
    """Resolve pyproject.toml into both lock files (keeping the pins that still fit unless `--upgrade`)."""
    _require_311()
    _make_venv()
    uv = VENV / "bin" / "uv"
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, UV], check=True)
    compile_ = [
        str(uv),
        "pip",
        "compile",
        str(PYPROJECT.name),
        "--universal",
        "--python-version",
        "3.11",
        "--quiet",
        "--custom-compile-command",
        LOCK_COMMAND,
        *extra_args,
    ]
    extras = [arg for name in LOCKED_EXTRAS for arg in ("--extra", name)]
    subprocess.run([*compile_, *extras, "-o", LOCK.name], check=True, cwd=ROOT)
    # The image's lock is the development one less the extras: constrained to it, so both agree on versions.
    subprocess.run([*compile_, "--constraints", LOCK.name, "-o", RUNTIME_LOCK.name], check=True, cwd=ROOT)
    print(f"wrote {LOCK.name} and {RUNTIME_LOCK.name}; commit them with pyproject.toml", flush=True)
    return 0


def lint() -> int:
    """ruff's rules and its formatting (`ruff format` fixes the latter), then mypy against its baseline; 0 when all
    pass."""
    ruff = VENV / "bin" / "ruff"
    check = subprocess.run([str(ruff), "check", "."], cwd=ROOT)
    formatted = subprocess.run([str(ruff), "format", "--check", "."], cwd=ROOT)
    if formatted.returncode:
        print(f"run `{ruff.relative_to(ROOT)} format .` to format them", file=sys.stderr, flush=True)
    return check.returncode or formatted.returncode or types(update=False)


def types(*, update: bool) -> int:
    """mypy, judged against mypy-baseline.txt: a new error fails, and so does an entry that no longer occurs."""
    mypy = subprocess.run([str(VENV / "bin" / "mypy")], cwd=ROOT, capture_output=True, text=True)
    if mypy.returncode not in (0, 1) or ("error:" not in mypy.stdout and mypy.returncode):
        sys.stderr.write(mypy.stdout + mypy.stderr)
        print("mypy did not run to the end (above)", file=sys.stderr)
        return 2
    tool = [str(VENV / "bin" / "mypy-baseline"), "sync" if update else "filter", "--no-colors"]
    before = BASELINE.read_text().count("\n") if BASELINE.exists() else 0
    judged = subprocess.run(tool, input=mypy.stdout, cwd=ROOT, capture_output=True, text=True)
    if update:
        after = BASELINE.read_text().count("\n")
        grew = "  It GREW: fix the new errors rather than listing them, where you can." if after > before else ""
        print(f"{BASELINE.name}: {before} -> {after} entries.{grew}", flush=True)
        return judged.returncode
    if judged.returncode:
        sys.stdout.write(judged.stdout + judged.stderr)
        print(
            f"\nmypy: the errors above are not in {BASELINE.name}, or entries of it no longer occur (fixed: good)."
            f"\nFix new errors; once the baseline only has to shrink (or after merging code), update it with:"
            f"\n  {BASELINE_COMMAND}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"mypy: no errors beyond the {before} listed in {BASELINE.name}", flush=True)
    return 0


# Debian packages the project uses where it can: Chromium prints the bulletin's PDF and renders its HTML in its
# test; the Noto CJK fonts give the charts their Chinese glyphs; `prometheus` ships `promtool`, which runs the alert
# rules' unit tests (deploy/prometheus/tests). Without them each degrades (no PDF, the test skipped with a reason).
SYSTEM_PACKAGES = {
    "/usr/bin/chromium": "chromium",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc": "fonts-noto-cjk",
    "/usr/bin/promtool": "prometheus",
}
# Packages wanted for a tool they ship, not for their service: installed without recommends (prometheus would
# bring the node exporter, smartmontools, ipmitool), no service started while installing (Debian's policy-rc.d,
# 101: action forbidden), and left disabled where systemd would start them at boot.
TOOLS_ONLY = {"prometheus"}
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def _apt_install(packages: list[str], quiet: dict[str, Any], *extra: str) -> int:
    """apt-get install, once more after an update when the package lists are stale; the exit code."""
    cmd = ["apt-get", "install", "-y", "-q", *extra, *packages]
    if code := subprocess.run(cmd, **quiet, timeout=900).returncode:
        subprocess.run(["apt-get", "update", "-q"], **quiet, timeout=300)
        code = subprocess.run(cmd, **quiet, timeout=900).returncode
    return int(code)


def ensure_system_packages() -> None:
    """Install the missing ones when this is a Debian machine we may administer (root, apt); never fatal."""
    missing = [pkg for path, pkg in SYSTEM_PACKAGES.items() if not Path(path).exists()]
    if not missing or os.environ.get("XIUHUA_NO_APT") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print(f"installing {' '.join(missing)} from Debian (XIUHUA_NO_APT=1 skips) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet: dict[str, Any] = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
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
                subprocess.run(["systemctl", "disable", "--now", *tools], **quiet, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"could not install {' '.join(missing)}: {exc}; going without", flush=True)
    finally:
        if ours:
            POLICY_RC_D.unlink(missing_ok=True)


def suite_workers(env: Mapping[str, str]) -> list[str]:
    """pytest-xdist's arguments for the whole suite: `XIUHUA_TEST_WORKERS` processes (default 4), each with its own
    servers, a test file's tests on one of them; 0 runs the suite in one process. More workers than the 2 cores
    of the development machine pay because most tests wait on servers and service processes."""
    workers = env.get("XIUHUA_TEST_WORKERS", str(SUITE_WORKERS)).strip()
    if not workers.isdigit():
        raise SystemExit(f"XIUHUA_TEST_WORKERS={workers!r}: a number of worker processes (0: none) is expected")
    return [] if int(workers) == 0 else ["-n", workers, "--dist", "loadfile"]


def main() -> int:
    """Dispatch the task."""
    task, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("help", [])
    if task not in {"up", "test", "lint", "types", "lock"}:
        print(__doc__)
        return 2
    if task == "lock":
        return lock(rest)
    ensure_venv()
    if task == "lint":
        return lint()
    if task == "types":
        return types(update="--update-baseline" in rest)
    ensure_system_packages()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if task == "up":
        cmd = [str(VENV / "bin" / "xiuhua"), "up", *rest]
    else:
        # The whole suite (CI) checks lint and types first; a developer's run of some tests does not wait for them.
        if not rest:
            if failed := lint():
                return failed
            rest = suite_workers(os.environ)
        cmd = [str(PY), "-m", "pytest", *rest]
    os.chdir(ROOT)
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    sys.exit(main())
