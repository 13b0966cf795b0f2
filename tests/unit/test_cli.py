"""The CLI says what it is: `--version`, `python -m xiuhua`, shell completion, progress on a terminal only."""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from importlib import metadata

import pytest
from rich.console import Console

from xiuhua_tools.commands.bench import phases
from xiuhua_tools.commands.completion import script
from xiuhua_tools.progress import Steps


def test_python_m_xiuhua_prints_the_versions_on_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "xiuhua", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    line = done.stdout
    assert line.count("\n") == 1 and line.startswith(f"xiuhua {metadata.version('xiuhua')} (Python 3.11.")
    assert f"nats-py {metadata.version('nats-py')}" in line and f"faststream {metadata.version('faststream')}" in line


def test_python_m_xiuhua_runs_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "xiuhua", "completion", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "bash,zsh,tcsh" in done.stdout


def _complete(words: list[str]) -> list[str]:
    """What bash completes for the words typed so far (the last one being completed), with the generated script."""
    typed = " ".join(words)
    program = (
        f"{script('bash')}\nCOMP_WORDS=({typed}); COMP_CWORD={len(words) - 1}; COMP_LINE='{typed}';"
        f" COMP_POINT={len(typed)}; _shtab_xiuhua; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_commands_subcommands_and_options() -> None:
    assert _complete(["xiuhua", "sco"]) == ["scoring"]
    assert _complete(["xiuhua", "scoring", "re"]) == ["rebuild"]
    assert _complete(["xiuhua", "dlq", "re"]) == ["redrive"]
    assert sorted(_complete(["xiuhua", "bench", "--re"])) == ["--rebuild-events", "--relay"]
    assert "--version" in _complete(["xiuhua", "--v"])


def test_zsh_and_tcsh_scripts_name_every_command() -> None:
    zsh = script("zsh")
    assert zsh.startswith("#compdef xiuhua")
    for command in ("bench", "bulletin", "chaos", "completion", "dlq", "scoring"):
        assert command in zsh
    assert "xiuhua" in script("tcsh")


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100, highlight=False), out


def test_a_terminal_gets_a_bar_that_counts_steps_and_items() -> None:
    console, out = _terminal()
    with Steps("bench", total=3, console=console) as steps:
        assert steps.live
        task = steps._progress.tasks[0]  # type: ignore[union-attr]
        steps.step("fixed rate")
        assert (task.completed, task.total) == (0, 3)  # the first step has begun, none is done
        steps.step("maximum rate")
        assert task.completed == 1
        steps.step("replaying XH_CASES", total=40)  # a step with items of its own: the bar counts them
        steps.count(39, 40)
        assert (task.completed, task.total) == (39, 40)
    assert "· fixed rate" in out.getvalue() and "· maximum rate" in out.getvalue()
    assert steps._progress is None  # stopped: the bar is gone


def test_elsewhere_a_line_per_step_and_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(file=io.StringIO(), stderr=True, force_terminal=False)
    with Steps("bench", total=2, console=console) as steps:
        assert not steps.live
        steps.step("fixed rate")
        steps.count(5, 10)  # nothing: a log keeps one line per step
        steps.note("rebuild: 1000 events replayed")
    assert capsys.readouterr().err == "· fixed rate\n· rebuild: 1000 events replayed\n"


@pytest.mark.parametrize(
    ("warmup", "bulletin", "rebuild", "history", "expected"),
    [(0.0, 0, 0, 0, 4), (0.1, 0, 0, 0, 5), (2.0, 1, 0, 0, 6), (2.0, 1, 1, 1, 8), (0.0, 0, 1, 0, 5)],
)
def test_bench_counts_its_phases(warmup: float, bulletin: int, rebuild: int, history: int, expected: int) -> None:
    args = argparse.Namespace(warmup=warmup, bulletin_cases=bulletin, rebuild_events=rebuild, history_cases=history)
    assert phases(args) == expected


def test_the_bar_names_a_step_without_its_details() -> None:
    console, _ = _terminal()
    with Steps("chaos", total=2, console=console) as steps:
        steps.step("… service_kill: two instances of every service; one of each SIGKILLed")
        assert steps._progress.tasks[0].description == "chaos: service_kill"  # type: ignore[union-attr]
        steps.step("replaying XH_CASES (40 messages)", total=40)
        assert steps._progress.tasks[0].description == "chaos: replaying XH_CASES (40 messages)"  # type: ignore[union-attr]
