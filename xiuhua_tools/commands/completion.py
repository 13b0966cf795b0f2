"""`xiuhua completion bash|zsh|tcsh`: the shell completion script for every command and option (shtab)."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "tcsh")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser(
        "completion",
        help="print the shell completion script",
        description='Load it in the running shell with  eval "$(xiuhua completion bash)", or for good with\n'
        "  xiuhua completion bash > /etc/bash_completion.d/xiuhua\n"
        '  xiuhua completion zsh > "${fpath[1]}/_xiuhua"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=_completion)


def script(shell: str) -> str:
    """The completion script of the whole `xiuhua` parser for `shell`."""
    import shtab

    from xiuhua_tools.cli import parser

    return shtab.complete(parser(), shell=shell)


def _completion(args: argparse.Namespace) -> int:
    print(script(args.shell))
    return 0
