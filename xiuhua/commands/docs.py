"""`xiuhua docs`: write the JSON Schema documents of every message (committed under contracts/schemas/)."""

from __future__ import annotations

import argparse

from xiuhua.commands import emit


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the command."""
    p = sub.add_parser("docs", help="generate the JSON Schema documents of the contracts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_docs)


def _docs(args: argparse.Namespace) -> int:
    from contracts.export import write

    paths = [str(p) for p in write()]
    emit(args, f"wrote {len(paths)} schema documents to contracts/schemas/", paths)
    return 0
