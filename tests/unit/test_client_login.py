"""Where an integrating system's URL and password come from (`xiuhua.client.login`), in order, and the sentence
it stops with when one is missing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from xiuhua.client import XiuhuaError, login


def _var(tmp_path: Path, nats: str | None = "nats://127.0.0.1:40111", passwords: dict[str, str] | None = None) -> Path:
    var = tmp_path / "var"
    (var / "security").mkdir(parents=True)
    if nats is not None:
        (var / "endpoints.json").write_text(json.dumps({"nats": nats, "store": "mongodb://x"}))
    if passwords is not None:
        (var / "security" / "passwords.json").write_text(json.dumps(passwords))
    return var


def test_embedded_default_gives_url_and_the_users_password(tmp_path: Path) -> None:
    var = _var(tmp_path, passwords={"hotline": "from-file", "units": "u"})
    conn = login.resolve(None, "hotline", var, env={})
    assert conn.url == "nats://127.0.0.1:40111" and conn.user == "hotline"
    assert conn.options == {"user": "hotline", "password": "from-file", "inbox_prefix": "_INBOX_hotline"}


def test_argument_beats_environment_beats_endpoints_file(tmp_path: Path) -> None:
    var = _var(tmp_path, passwords={"hotline": "p"})
    env = {"XIUHUA_NATS_URL": "nats://env:4222"}
    assert login.resolve("nats://arg:4222", "hotline", var, env=env).url == "nats://arg:4222"
    assert login.resolve(None, "hotline", var, env=env).url == "nats://env:4222"
    assert login.resolve(None, "hotline", var, env={}).url == "nats://127.0.0.1:40111"


def test_deployment_secret_beats_the_generated_password(tmp_path: Path) -> None:
    var = _var(tmp_path, passwords={"units": "generated"})
    conn = login.resolve(None, "units", var, env={"XIUHUA_NATS_PASSWORD_UNITS": "secret"})
    assert conn.options["password"] == "secret"
    # Another user's secret is not this one's.
    other = login.resolve(None, "units", var, env={"XIUHUA_NATS_PASSWORD_HOTLINE": "secret"})
    assert other.options["password"] == "generated"


def test_missing_password_names_the_variable_and_the_file(tmp_path: Path) -> None:
    var = _var(tmp_path, passwords={"hotline": "p"})
    with pytest.raises(XiuhuaError) as exc:
        login.resolve(None, "dept_jq", var, env={})
    assert "XIUHUA_NATS_PASSWORD_DEPT_JQ" in str(exc.value) and "passwords.json" in str(exc.value)


def test_missing_url_says_how_to_give_one(tmp_path: Path) -> None:
    var = _var(tmp_path, nats=None, passwords={"hotline": "p"})
    with pytest.raises(XiuhuaError, match=r"--nats.*XIUHUA_NATS_URL"):
        login.resolve(None, "hotline", var, env={})


def test_empty_user_connects_without_one(tmp_path: Path) -> None:
    conn = login.resolve("nats://open:4222", "", tmp_path, env={})
    assert conn.user is None and conn.options == {}


def test_command_line_options(tmp_path: Path) -> None:
    var = _var(tmp_path, passwords={"units": "u"})
    p = argparse.ArgumentParser()
    login.add_arguments(p, user="units")
    conn = login.from_args(p.parse_args(["--var", str(var)]))
    assert (conn.user, conn.options["password"]) == ("units", "u")
    conn = login.from_args(p.parse_args(["--var", str(var), "--user", "", "--nats", "nats://h:1"]))
    assert (conn.url, conn.user) == ("nats://h:1", None)
