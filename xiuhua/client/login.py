"""How an integrating system finds the bus and logs in: as the user Xiuhua's permissions give it.

A system connects as its own NATS user (the hotline bridge as `hotline`, a unit's case system as `units` or a user
the city added for its department), never anonymously: the embedded default and any secured deployment refuse
that. The URL and the password are found the way an operator's shell has them:

- URL: `--nats`, else `XIUHUA_NATS_URL`, else the bus of the `xiuhua up` running from this folder
  (`var/endpoints.json`);
- password: `XIUHUA_NATS_PASSWORD_<USER>` (a deployment's secret), else the embedded default's generated one
  (`var/security/passwords.json`).

An empty user connects without one, for an open test server.

    conn = login.resolve(None, "hotline", Path("var"))
    async with XiuhuaClient(conn.url, **conn.options) as xh: ...
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xiuhua.client.errors import XiuhuaError
from xiuhua.security import embedded_passwords, login, password_env


class NoLogin(XiuhuaError):
    """What is missing to connect, as a sentence."""


@dataclass(frozen=True)
class Connection:
    """Where to connect and as whom: `XiuhuaClient(c.url, **c.options)`."""

    url: str
    user: str | None
    options: dict[str, str]


def add_arguments(parser: argparse.ArgumentParser, user: str) -> None:
    """The connection options a command-line system takes (`--nats`, `--user`, `--var`); `user` is its default."""
    parser.add_argument("--nats", help="NATS URL; default: XIUHUA_NATS_URL, else var/endpoints.json of `xiuhua up`")
    parser.add_argument("--user", default=user, help=f"NATS user of Xiuhua's permissions (default {user}; '' none)")
    parser.add_argument("--var", type=Path, default=Path("var"), help="the folder `xiuhua up` writes (default var)")


def resolve(url: str | None, user: str | None, var_dir: Path, env: Mapping[str, str] | None = None) -> Connection:
    """The URL and login options, from the arguments, the environment and `var_dir`, in that order."""
    env = os.environ if env is None else env
    url = url or env.get("XIUHUA_NATS_URL") or _read(var_dir / "endpoints.json").get("nats")
    if not url:
        raise NoLogin(
            "no NATS URL: pass --nats, set XIUHUA_NATS_URL, or start `xiuhua up` in this folder "
            f"(it writes {var_dir / 'endpoints.json'})"
        )
    if not user:
        return Connection(url, None, {})
    password = env.get(password_env(user)) or embedded_passwords(var_dir).get(user)
    if not password:
        raise NoLogin(
            f"no password for NATS user {user!r}: set {password_env(user)}, or run from the folder of the "
            f"`xiuhua up` that generated {var_dir / 'security' / 'passwords.json'}"
        )
    return Connection(url, user, login(user, password))


def from_args(args: argparse.Namespace) -> Connection:
    """The connection `add_arguments`' options name."""
    return resolve(args.nats, args.user, args.var)


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
