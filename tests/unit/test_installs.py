"""Installs come from the lock files, which must hold everything pyproject.toml asks for; the pytest plugin loads
after a plain install."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tasks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xiuhua_tasks", ROOT / "tasks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PYPROJECT = """
[project]
name = "x"
dependencies = ["nats-py==2.16.0", "rich>=15.0"]
[project.optional-dependencies]
test = ["pytest>=9.2"]
testing = ["pytest>=9.2"]
"""


def _write(tmp_path: Path, pyproject: str, dev: str, runtime: str) -> tuple[Path, Path, Path]:
    paths = tmp_path / "pyproject.toml", tmp_path / "dev.lock", tmp_path / "runtime.lock"
    for path, text in zip(paths, (pyproject, dev, runtime), strict=True):
        path.write_text(textwrap.dedent(text))
    return paths


def test_the_repository_lock_files_hold_every_dependency_of_pyproject() -> None:
    tasks = _tasks()
    assert tasks.lock_problems() == []
    pins = tasks.locked_versions(tasks.RUNTIME_LOCK)
    assert pins["nats-py"] == "2.16.0" and pins["faststream"] == "0.7.8"  # what the pull loop was written against
    assert "pytest" not in pins and "mypy" not in pins  # the image installs the runtime alone
    dev = tasks.locked_versions(tasks.LOCK)
    assert all(dev[name] == version for name, version in pins.items())  # one version of each, in both


def test_a_lock_that_matches_has_no_problem(tmp_path: Path) -> None:
    tasks = _tasks()
    dev = "nats-py==2.16.0\n    # via x\nrich==15.0.0\npytest==9.2.0 ; python_full_version >= '3.11'\n"
    assert tasks.lock_problems(*_write(tmp_path, PYPROJECT, dev, "nats-py==2.16.0\nrich==15.0.0\n")) == []


def test_a_dependency_missing_from_a_lock_is_named(tmp_path: Path) -> None:
    tasks = _tasks()
    problems = tasks.lock_problems(
        *_write(tmp_path, PYPROJECT, "nats-py==2.16.0\npytest==9.2.0\n", "nats-py==2.16.0\nrich==15.0.0\n")
    )
    assert problems == ["dev.lock: rich>=15.0 is not in it"]


def test_a_pin_outside_the_range_is_named_at_the_boundary(tmp_path: Path) -> None:
    tasks = _tasks()
    runtime = "nats-py==2.16.0\nrich==14.9.9\n"  # just below rich>=15.0
    dev = "nats-py==2.16.1\nrich==15.0.0\npytest==9.2.0\n"  # just past nats-py==2.16.0
    problems = tasks.lock_problems(*_write(tmp_path, PYPROJECT, dev, runtime))
    assert problems == [
        "dev.lock: nats-py==2.16.0 but it has nats-py==2.16.1",
        "runtime.lock: rich>=15.0 but it has rich==14.9.9",
    ]


def test_tasks_refuses_to_install_from_a_stale_lock_and_says_how_to_regenerate(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text((ROOT / "tasks.py").read_text())
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (tmp_path / "requirements-dev.lock").write_text("nats-py==2.16.0\nrich==15.0.0\npytest==9.2.0\n")
    (tmp_path / "requirements.lock").write_text("nats-py==2.16.0\n")
    done = subprocess.run(
        [sys.executable, str(tmp_path / "tasks.py"), "test", "-x"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "requirements.lock: rich>=15.0 is not in it" in done.stderr
    assert "Regenerate them with: python3.11 tasks.py lock" in done.stderr
    assert not (tmp_path / ".venv").exists()  # nothing installed from it


@pytest.mark.parametrize("asks_for_xiuhua", [False, True])
def test_the_pytest_plugin_loads_without_pytest_asyncio(tmp_path: Path, asks_for_xiuhua: bool) -> None:
    """`pip install xiuhua` brings the plugin (an entry point) but not pytest-asyncio: an integrator's other
    tests still run, and one that asks for the fixture is told what to install."""
    (tmp_path / "test_integrator.py").write_text(
        "def test_plain():\n    assert 1 + 1 == 2\n\n"
        + ("def test_with_xiuhua(xiuhua):\n    pass\n" if asks_for_xiuhua else "")
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # First on the path, a pytest_asyncio that cannot be imported: as if it were not installed.
    (tmp_path / "absent" / "pytest_asyncio").mkdir(parents=True)
    (tmp_path / "absent" / "pytest_asyncio" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pytest_asyncio'\", name='pytest_asyncio')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:asyncio", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "absent")},
    )
    if asks_for_xiuhua:
        assert "1 passed, 1 error" in done.stdout, done.stdout + done.stderr
        assert 'pip install "xiuhua[testing]"' in done.stdout
    else:
        assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_the_image_installs_the_runtime_lock_and_then_the_project_alone() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    lock_at = dockerfile.index("pip install --no-cache-dir -r requirements.lock")
    project_at = dockerfile.index("pip install --no-cache-dir --no-deps .")
    assert "COPY requirements.lock" in dockerfile and lock_at < project_at
    assert "pip check" in dockerfile[project_at:]


def test_types_fail_on_a_new_error_and_on_a_stale_baseline_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = _tasks()
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mypy]\nfiles = ["m.py"]\n[tool.mypy-baseline]\nbaseline_path = "mypy-baseline.txt"\n'
    )
    (tmp_path / "m.py").write_text('count: int = "one"\n')
    (tmp_path / "mypy-baseline.txt").write_text("")
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    monkeypatch.setattr(tasks, "BASELINE", tmp_path / "mypy-baseline.txt")
    assert tasks.types(update=False) == 1  # an error the baseline does not list
    assert "python3.11 tasks.py types --update-baseline" in capsys.readouterr().err
    assert tasks.types(update=True) == 0
    assert "m.py:0: error: Incompatible types in assignment" in (tmp_path / "mypy-baseline.txt").read_text()
    assert tasks.types(update=False) == 0  # listed: passes
    (tmp_path / "m.py").write_text("count: int = 1\n")
    assert tasks.types(update=False) == 1  # fixed, but still listed: the baseline must shrink with it
    assert "no longer occur" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ["-n", "4", "--dist", "loadfile"]),
        ("0", []),
        ("1", ["-n", "1", "--dist", "loadfile"]),
        ("8", ["-n", "8", "--dist", "loadfile"]),
    ],
)
def test_the_whole_suite_runs_in_the_workers_asked_for(value: str | None, expected: list[str]) -> None:
    env = {} if value is None else {"XIUHUA_TEST_WORKERS": value}
    assert _tasks().suite_workers(env) == expected


def test_a_worker_count_that_is_not_a_number_is_refused_saying_what_is_expected() -> None:
    with pytest.raises(SystemExit, match="XIUHUA_TEST_WORKERS='auto'"):
        _tasks().suite_workers({"XIUHUA_TEST_WORKERS": "auto"})
