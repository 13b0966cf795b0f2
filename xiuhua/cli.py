"""The operator CLI, `xiuhua` (docs/operating/cli.md). Each command lives in xiuhua/commands/ and registers itself."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from xiuhua import commands


def parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    p = argparse.ArgumentParser(prog="xiuhua", description="Xiuhua (绣花): city refined-management event backbone")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Every module in xiuhua/commands/ registers its own command: adding one needs no edit here.
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"xiuhua.commands.{mod.name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, exit with the command's code."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
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
