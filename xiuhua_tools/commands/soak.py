"""`xiuhua soak --minutes N --rate R`: the embedded system under a steady feed; what it keeps, per case."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser(
        "soak",
        help="run the embedded system under a steady feed; print store and stream bytes per case and the "
        "ledger's course past its horizon",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="how long the feed runs")
    p.add_argument("--rate", type=float, default=20.0, help="reports per second")
    p.add_argument(
        "--ledger-horizon",
        default="4m",
        help="the ledger's horizon for the soak (the city's retention.yaml otherwise; default 4m, just past the "
        "least a default ack wait allows)",
    )
    p.add_argument("--purge-every", default="20s", help="how often the services purge during the soak")
    p.add_argument("--sample-every", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--json", dest="json_file", type=Path, help="write the samples and figures as JSON to FILE")
    p.set_defaults(func=_soak)


def _soak(args: argparse.Namespace) -> int:
    from xiuhua_tools.bench.soak import as_json, run, table

    def progress(text: str) -> None:
        print(f"· {text}", file=sys.stderr, flush=True)

    samples, figures = asyncio.run(
        run(
            minutes=args.minutes,
            rate=args.rate,
            ledger=args.ledger_horizon,
            every=args.purge_every,
            sample_every=args.sample_every,
            progress=progress,
        )
    )
    print(table(samples, figures))
    if args.json_file:
        args.json_file.write_text(json.dumps(as_json(samples, figures), indent=2, ensure_ascii=False))
    return 0
