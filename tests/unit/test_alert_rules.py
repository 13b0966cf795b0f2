"""The alert rules fire when they should and stay quiet when they should: `promtool test rules` on every file in
deploy/prometheus/tests/, and every alert rule has at least one case of each."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: Debian's `prometheus` package ships it (`python3.11 tasks.py` "
    "installs it as root on Debian; XIUHUA_NO_APT=1 skips that)",
)


def _alerts() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def _cases() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            out += [(path.name, case) for case in test.get("alert_rule_test", [])]
    return out


def test_there_are_rule_tests_and_each_names_the_rules_file():
    assert TEST_FILES
    for path in TEST_FILES:
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["rule_files"] == ["../alerts.yml"], path.name


def test_every_alert_rule_has_a_firing_case_and_a_quiet_case():
    alerts = _alerts()
    firing = {case["alertname"] for _, case in _cases() if case.get("exp_alerts")}
    quiet = {case["alertname"] for _, case in _cases() if not case.get("exp_alerts")}
    assert not alerts - firing, f"no case makes these fire: {sorted(alerts - firing)}"
    assert not alerts - quiet, f"no case keeps these quiet: {sorted(alerts - quiet)}"
    assert not (firing | quiet) - alerts, f"cases for alerts that do not exist: {sorted((firing | quiet) - alerts)}"


@needs_promtool
def test_the_rules_file_is_valid():
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(PROMETHEUS / "alerts.yml")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_promtool_rule_tests_pass(path: Path):
    done = subprocess.run(
        [PROMTOOL, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
