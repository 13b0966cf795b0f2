"""`xiuhua chaos [--json]`: every fault scenario against its own embedded servers, then the table.

Exits 1 if any scenario lost or duplicated anything (or left a poison message out of the dead-letter queue).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from rich.console import Console

from xiuhua_tools.commands import emit
from xiuhua_tools.progress import Steps


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    from xiuhua_tools.chaos.scenarios import SCENARIOS

    p = sub.add_parser("chaos", help="run the fault scenarios on embedded servers and print what survived")
    p.add_argument("--reports", type=int, default=100, help="reports sent per scenario (default 100)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        choices=[s.name for s in SCENARIOS],
        help="run only this scenario (repeatable)",
    )
    p.add_argument("--keep", type=Path, help="run under this folder and keep servers' and services' files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_chaos)


def _chaos(args: argparse.Namespace) -> int:
    from xiuhua_tools.chaos.scenarios import SCENARIOS, run_all, table

    logging.getLogger().setLevel(logging.ERROR)  # the scenarios break things on purpose: spare the console
    total = len(args.only and set(args.only)) or len(SCENARIOS)
    with Steps("chaos", total=total, prefix="", console=Console(stderr=bool(args.json), highlight=False)) as steps:
        results = asyncio.run(run_all(n=args.reports, root=args.keep, only=tuple(args.only), progress=steps.step))
    rows = [
        {
            **r.row(),
            "resends": r.resends,
            "poison_sent": r.poison_sent,
            "rejected": r.tally.rejected,
            "merged": r.tally.merged,
            "events": r.tally.events,
            "problems": r.tally.problems,
            "dead_letter_errors": r.tally.dead_letter_errors,
        }
        for r in results
    ]
    failed = [r for r in results if not r.ok]
    human = table(results)
    for r in failed:
        human += f"\n✗ {r.scenario}: " + "; ".join(r.tally.problems or ["poison not dead-lettered"])
        for error, count in r.tally.dead_letter_errors.items():
            human += f"\n    dead letter ×{count} {error}"
    human += "\n" + ("FAILED: something was lost or duplicated" if failed else "all scenarios: 0 lost, 0 duplicated")
    emit(args, human, {"ok": not failed, "scenarios": rows})
    return 1 if failed else 0
