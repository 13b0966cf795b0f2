"""The operator CLI, `xiuhua` (docs/operating/cli.md). Each command lives in commands/ and registers itself."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import platform
import sys
from importlib import metadata

from xiuhua import logs
from xiuhua.settings import get_settings
from xiuhua_tools import commands


def version_line() -> str:
    """Xiuhua's version with those of Python and the libraries its runtime depends on most."""
    parts = [f"{name} {_installed(name)}" for name in ("faststream", "nats-py", "pymongo", "pydantic")]
    return f"xiuhua {_installed('xiuhua')} (Python {platform.python_version()}, {', '.join(parts)})"


class _Version(argparse.Action):
    """`--version` on one line (argparse's own wraps it to the terminal's width), computed only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=str(kwargs.get("help")))

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(version_line())
        parser.exit()


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    p = argparse.ArgumentParser(prog="xiuhua", description="Xiuhua (绣花): city refined-management event backbone")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action=_Version, help="print the versions of Xiuhua and its main libraries")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Every module in xiuhua_tools/commands/ registers its own command: adding one needs no edit here.
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"xiuhua_tools.commands.{mod.name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, exit with the command's code."""
    args = parser().parse_args(argv)
    try:
        logs.configure(level=logging.DEBUG if args.verbose else logging.WARNING, fmt=get_settings().log_format)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the operator sees a sentence, not a traceback (use -v for details)
        if args.verbose:
            raise
        print(f"xiuhua {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
